"""The admin interface's REST API, on the running gateway: changes go through the same path as a
reload (checked, bound, persisted, swapped whole), errors name the field with the messages of
`portgate check`, and what was answered is on disk."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from adminclient import Admin
from conftest import BINARY, connect, echo_roundtrip, free_ports, is_refused

API = "/api/v1"


def tcp_map(name, port, target, **extra):
    m = {"name": name, "proto": "tcp", "listen": f"127.0.0.1:{port}",
         "target": f"127.0.0.1:{target}"}
    m.update(extra)
    return m


def file_map(name, port, target):
    return f"[map {name}]\nproto = tcp\nlisten = 127.0.0.1:{port}\ntarget = 127.0.0.1:{target}\n"


@pytest.fixture
def admin_gateway(gateway, tcp_echo):
    """A gateway with one mapping from its config file ("file") and its admin socket."""
    srv = tcp_echo()
    port = free_ports()
    g = gateway(config=file_map("file", port, srv.port))
    g.srv, g.file_port = srv, port
    g.api = Admin(g.admin_socket)
    return g


def test_add_change_disable_delete(admin_gateway):
    g, api = admin_gateway, admin_gateway.api
    port = free_ports()
    r = api.post(f"{API}/mappings", tcp_map("cam", port, g.srv.port))
    assert r.status == 201, r
    assert r.headers["Location"] == f"{API}/mappings/cam"
    rev = int(r.etag.strip('"'))
    assert r.json["source"] == "api" and r.json["read-only"] is False
    assert r.json["status"]["state"] == "listening"
    assert echo_roundtrip(port) == b"hello portgate"
    # The echo's connection ends in the gateway a moment after the client has its bytes: the
    # two reads compared below must not straddle that.
    deadline = time.time() + 10
    while api.mappings()["cam"]["stats"]["open"] != 0 and time.time() < deadline:
        time.sleep(0.02)
    # Listed with the file's mapping, each with its source.
    maps = api.mappings()
    assert maps["file"]["read-only"] is True
    assert re.fullmatch(r".*/portgate\.conf:\d+", maps["file"]["source"]), maps["file"]
    assert maps["cam"]["max-conns"] == 0 and maps["cam"]["connect-timeout"] == "10s"
    # The list and a single read show a mapping alike (the list is written from a cache).
    for name in ("cam", "file"):
        one = api.get(f"{API}/mappings/{name}").json
        assert one == maps[name], (one, maps[name])
    # On disk before the answer: the state file has it, with the revision.
    st = json.loads(g.state.read_text())
    assert st["revision"] == rev and [m["name"] for m in st["mappings"]] == ["cam"]
    assert "status" not in st["mappings"][0]

    r = api.patch(f"{API}/mappings/cam", {"allow": ["198.51.100.0/24"]})
    assert r.status == 200 and r.json["allow"] == ["198.51.100.0/24"], r
    assert is_refused(port)  # 127.0.0.1 is not allowed now
    r = api.patch(f"{API}/mappings/cam", {"allow": None})  # null: back to the default
    assert r.status == 200 and r.json["allow"] == [], r
    assert echo_roundtrip(port) == b"hello portgate"

    r = api.post(f"{API}/mappings/cam/disable")
    assert r.status == 200 and r.json["enabled"] is False, r
    assert r.json["status"]["state"] == "disabled"
    assert is_refused(port)
    assert json.loads(g.state.read_text())["mappings"][0]["enabled"] is False
    r = api.post(f"{API}/mappings/cam/enable")
    assert r.status == 200 and r.json["enabled"] is True
    assert echo_roundtrip(port) == b"hello portgate"

    # PUT replaces: keys not given take their defaults.
    r = api.put(f"{API}/mappings/cam", tcp_map("cam", port, g.srv.port, **{"max-conns": 3}))
    assert r.status == 200 and r.json["max-conns"] == 3, r
    # What GET returns can be PUT back as it is.
    got = api.get(f"{API}/mappings/cam").json
    r = api.put(f"{API}/mappings/cam", got)
    assert r.status == 200, r

    r = api.delete(f"{API}/mappings/cam")
    assert r.status == 204, r
    assert is_refused(port)
    assert api.get(f"{API}/mappings/cam").status == 404
    assert json.loads(g.state.read_text())["mappings"] == []
    assert echo_roundtrip(g.file_port) == b"hello portgate"  # the file's mapping never moved


def test_config_file_mappings_are_read_only(admin_gateway):
    api = admin_gateway.api
    for r in (api.delete(f"{API}/mappings/file"),
              api.patch(f"{API}/mappings/file", {"max-conns": 1}),
              api.post(f"{API}/mappings/file/disable")):
        assert r.status == 403, r
        assert "is defined in" in r.json["error"] and re.search(r"portgate\.conf:\d+", r.json["error"])
    assert api.mappings()["file"]["enabled"] is True


def check_message(tmp_path, section):
    """What `portgate check` says about a [map x] section, without the file's name and line."""
    conf = tmp_path / "check.conf"
    conf.write_text("[gateway]\nadmin = off\nadmin-socket = off\n" + section)
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout
    line = r.stderr.splitlines()[0]
    return line.split("] ", 1)[1]  # after "FILE:LINE: [map x]"


@pytest.mark.parametrize("key,value,section_value", [
    ("listen", "127.0.0.1:99999", "127.0.0.1:99999"),
    ("allow", ["10.0.0.0/33"], "10.0.0.0/33"),
    ("max-conns", "lots", "lots"),
    ("idle-timeout", "30", "30"),
    ("connect-timeout", 5, "5"),
])
def test_errors_name_the_field_as_check_does(admin_gateway, tmp_path, key, value, section_value):
    api = admin_gateway.api
    port = free_ports()
    body = tcp_map("x", port, 9)
    body[key] = value
    r = api.post(f"{API}/mappings", body)
    assert r.status == 400, r
    assert r.json["field"] == key
    section = "[map x]\n" + "".join(f"{k} = {v}\n" for k, v in body.items()
                                     if k not in ("name", key)) + f"{key} = {section_value}\n"
    assert r.json["error"] == "[map x] " + check_message(tmp_path, section)
    assert "x" not in admin_gateway.api.mappings()


def test_bad_requests(admin_gateway):
    api = admin_gateway.api
    port = free_ports()
    ok = tcp_map("x", port, 9)
    cases = [
        (api.request("POST", f"{API}/mappings", raw=b"{not json",
                     headers={"Content-Type": "application/json"}), 400, None, "not valid JSON"),
        (api.request("POST", f"{API}/mappings", raw=json.dumps(ok).encode(),
                     headers={"Content-Type": "text/plain"}), 415, None, "Content-Type"),
        (api.post(f"{API}/mappings", dict(ok, colour="red")), 400, "colour",
         'unknown key "colour"'),
        (api.post(f"{API}/mappings", dict(ok, **{"max-conns": [1]})), 400, "max-conns",
         "expected a string, a whole number or true/false"),
        (api.post(f"{API}/mappings", dict(ok, allow=[5])), 400, "allow", "expected a string"),
        (api.post(f"{API}/mappings", dict(ok, name="a/b")), 400, "name", "letters, digits"),
        (api.post(f"{API}/mappings", dict(ok, name="n" * 64)), 400, "name", "1 to 63"),
        (api.post(f"{API}/mappings", dict(ok, name=5)), 400, "name", "expected a string"),
        (api.post(f"{API}/mappings", [ok]), 400, None, "a mapping is a JSON object"),
        (api.post(f"{API}/mappings", dict(ok, lease=-1)), 400, "lease", "expected seconds"),
        (api.post(f"{API}/mappings", dict(ok, name="file")), 409, "name", "is taken"),
        (api.post(f"{API}/mappings", dict(ok, listen=f"127.0.0.1:{admin_gateway.file_port}")),
         409, "listen", "overlap [map file]"),
        (api.request("POST", f"{API}/mappings", raw=b'{"name": "\xff\xfe"}',
                     headers={"Content-Type": "application/json"}), 400, None, "not valid JSON"),
        (api.request("POST", f"{API}/mappings", raw=b'{"name": "a", "name": "b"}',
                     headers={"Content-Type": "application/json"}), 400, None, "duplicate"),
        (api.get(f"{API}/mappings/nope"), 404, None, "no mapping called"),
        (api.get(f"{API}/nothing"), 404, None, "no such endpoint"),
        (api.delete(f"{API}/mappings"), 405, None, "not allowed"),
    ]
    for r, status, field, text in cases:
        assert r.status == status, r
        assert r.headers["Content-Type"] == "application/json", r.headers
        assert text in r.json["error"], r
        assert r.json.get("field") == field, r
    assert set(api.mappings()) == {"file"}


def raw_exchange(path, data):
    """Sends data on a new connection to the unix socket path and reads until it closes."""
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(10)
    c.connect(str(path))
    try:
        c.sendall(data)
    except BrokenPipeError:
        pass  # answered and closed before all was sent
    out = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except ConnectionResetError:
        pass
    c.close()
    return out.decode(errors="replace")


def test_body_over_1_mib(admin_gateway):
    sock = admin_gateway.admin_socket
    # Announced: answered at once, the body never read.
    head = (b"POST /api/v1/mappings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (2 << 20))
    out = raw_exchange(sock, head)
    assert out.startswith("HTTP/1.1 413"), out
    assert "larger than 1 MiB" in out
    # Chunked, with no length given: read and dropped, then refused.
    chunk = b"%x\r\n%s\r\n" % (64 << 10, b" " * (64 << 10))
    out = raw_exchange(sock, b"POST /api/v1/mappings HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: close\r\n\r\n" + chunk * 20 + b"0\r\n\r\n")
    assert out.startswith("HTTP/1.1 413"), out[:200]
    assert set(admin_gateway.api.mappings()) == {"file"}


def test_listen_address_held_by_another_process(admin_gateway):
    port = free_ports()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        r = admin_gateway.api.post(f"{API}/mappings", tcp_map("x", port, 9))
        assert r.status == 409 and r.json["field"] == "listen", r
        assert "Address already in use" in r.json["error"]
        assert "x" not in admin_gateway.api.mappings()
    finally:
        holder.close()


def test_if_match(admin_gateway):
    api = admin_gateway.api
    r = api.get(f"{API}/config")
    assert r.status == 200
    rev = r.etag
    assert rev == f'"{r.json["revision"]}"'
    assert r.json["gateway"]["admin-socket"] == str(admin_gateway.admin_socket)
    one, two = free_ports(), free_ports()
    # Two people edit at once: the second write, made against the same revision, is refused.
    r = api.post(f"{API}/mappings", tcp_map("a", one, 9), headers={"If-Match": rev})
    assert r.status == 201, r
    r = api.post(f"{API}/mappings", tcp_map("b", two, 9), headers={"If-Match": rev})
    assert r.status == 412, r
    assert "changed since you read it" in r.json["error"]
    assert "b" not in api.mappings()
    r = api.delete(f"{API}/mappings/a", headers={"If-Match": rev})
    assert r.status == 412
    r = api.delete(f"{API}/mappings/a", headers={"If-Match": api.get(f"{API}/config").etag})
    assert r.status == 204


def test_put_config_and_check(admin_gateway):
    api = admin_gateway.api
    g = admin_gateway
    p1, p2 = free_ports(), free_ports()
    assert api.post(f"{API}/mappings", tcp_map("old", p1, g.srv.port)).status == 201
    cfg = api.get(f"{API}/config").json
    rev = cfg["revision"]
    # A dry run changes nothing.
    r = api.post(f"{API}/check", tcp_map("new", p2, g.srv.port))
    assert r.status == 200 and r.json == {"ok": True}, r
    r = api.post(f"{API}/check", tcp_map("new", p2, g.srv.port, listen="1.2.3.4"))
    assert r.status == 400 and r.json["field"] == "listen", r
    assert api.get(f"{API}/config").json["revision"] == rev
    # PUT /config: the API mappings become the list's; the file's, given as read, stay.
    maps = [m for m in cfg["mappings"] if m["name"] == "file"] + [tcp_map("new", p2, g.srv.port)]
    r = api.put(f"{API}/config", {"mappings": maps})
    assert r.status == 200, r
    assert set(api.mappings()) == {"file", "new"}
    assert is_refused(p1) and echo_roundtrip(p2) == b"hello portgate"
    # Changing the file's mapping there is refused, and nothing changes.
    changed = dict(maps[0], **{"max-conns": 9})
    r = api.put(f"{API}/config", {"mappings": [changed]})
    assert r.status == 403, r
    assert set(api.mappings()) == {"file", "new"}


def test_status_and_metrics(admin_gateway):
    api = admin_gateway.api
    assert echo_roundtrip(admin_gateway.file_port) == b"hello portgate"
    r = api.get(f"{API}/status")
    assert r.status == 200, r
    st = r.json
    assert st["version"] and st["workers"] >= 1 and st["fds"]["open"] > 0
    assert st["mappings"]["config"] == 1 and st["mappings"]["api"] == 0
    assert st["sources"][0]["kind"] == "config"
    r = api.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r
    text = r.body
    assert re.search(r'^portgate_mapping_accepted_total\{mapping="file",proto="tcp"\} 1$', text,
                     re.M), text
    assert re.search(r'^portgate_mapping_bytes_total\{mapping="file",proto="tcp",'
                     r'direction="in"\} 14$', text, re.M), text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_state_survives_restart_and_reload(gateway, tcp_echo, tmp_path):
    srv = tcp_echo()
    fport, aport = free_ports(), free_ports()
    conf = file_map("file", fport, srv.port)
    g = gateway(config=conf)
    api = Admin(g.admin_socket)
    assert api.post(f"{API}/mappings", tcp_map("cam", aport, srv.port)).status == 201
    rev = api.get(f"{API}/config").json["revision"]
    out = g.reload()
    assert "configuration applied" in out
    assert "cam" in api.mappings() and echo_roundtrip(aport) == b"hello portgate"
    g.stop(signal.SIGKILL)
    # Started again on the same file (which names the same state file and socket).
    gateway("-c", str(g.conf))
    api = Admin(g.admin_socket)
    assert api.get(f"{API}/mappings/cam").status == 200
    assert api.get(f"{API}/config").json["revision"] > rev
    assert echo_roundtrip(aport) == b"hello portgate"


def test_bad_state_file_is_an_error(tmp_path):
    port = free_ports()
    state = tmp_path / "state.json"
    conf = tmp_path / "p.conf"
    conf.write_text(f"[gateway]\nadmin = off\nadmin-socket = {tmp_path}/a.sock\n"
                    f"state = {state}\n" + file_map("file", port, 9))
    cases = [
        ("{", "not valid JSON"),
        ('{"mappings": []}', "not a portgate state file"),
        ('{"portgate-state": 1, "revision": 3, "mappings": [{"name": "x", "proto": "tcp", '
         f'"listen": "127.0.0.1:{port}", "target": "192.0.2.1:80"}}]}}',
         "[map x] listen: tcp ports"),
    ]
    for text, want in cases:
        state.write_text(text)
        for cmd in ("check", "run"):
            r = subprocess.run([BINARY, cmd, "-c", str(conf)], capture_output=True, text=True,
                               timeout=10)
            assert r.returncode == 1, (cmd, r.stderr)
            assert str(state) in r.stderr and want in r.stderr, r.stderr
    state.write_text("{}")
    os.chmod(state, 0)
    if os.geteuid() != 0:  # root reads it anyway
        r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert r.returncode == 1 and "Permission denied" in r.stderr


def test_lease_ends(admin_gateway):
    api, g = admin_gateway.api, admin_gateway
    port = free_ports()
    r = api.post(f"{API}/mappings", tcp_map("tmp", port, g.srv.port, lease=1))
    assert r.status == 201 and 0 <= r.json["lease"] <= 1 and r.json["expires"] > 0, r
    assert echo_roundtrip(port) == b"hello portgate"
    assert json.loads(g.state.read_text())["mappings"][0]["expires"] == r.json["expires"]
    listed = api.mappings()["tmp"]
    assert listed["expires"] == r.json["expires"] and listed["lease"] <= 1
    deadline = time.time() + 5
    while "tmp" in api.mappings() and time.time() < deadline:
        time.sleep(0.1)
    assert "tmp" not in api.mappings()
    assert is_refused(port)
    assert json.loads(g.state.read_text())["mappings"] == []
    g.wait_log("map tmp: its lease ended")


def http_gateway(gateway):
    """A gateway with its HTTP listener on a free loopback port; g.web talks to it."""
    port = free_ports()
    g = gateway(config=f"[gateway]\nadmin = 127.0.0.1:{port}\n" + file_map("file",
                                                                             free_ports(), 9))
    g.web = Admin(host="127.0.0.1", port=port)
    g.web_port = port
    return g


def passwd(g, user, password):
    r = subprocess.run([BINARY, "passwd", "-c", str(g.conf), "--password-stdin", user],
                       input=password + "\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r


def test_http_listener_serves_the_page_and_needs_a_user(gateway):
    g = http_gateway(gateway)
    web = g.web
    # No user yet: the page says how to make one, and nothing else works.
    r = web.get(f"{API}/session")
    assert r.status == 401 and r.json["setup"] is True, r
    assert "portgate passwd" in r.json["error"]
    assert web.get(f"{API}/mappings").status == 401
    assert web.get("/metrics").status == 401
    r = web.get("/")
    assert r.status == 200 and "<html" in r.body
    for h, v in (("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
                 ("Referrer-Policy", "no-referrer")):
        assert r.headers[h] == v
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in r.headers["Content-Security-Policy"]
    assert web.get("/assets/app.js").headers["Content-Type"].startswith("text/javascript")
    for bad in ("/assets/../../etc/passwd", "/assets/%2e%2e/%2e%2e/etc/passwd", "/../etc/passwd",
                "/assets/", "/assets/app.js/", "/etc/passwd", "/assets//app.js"):
        c = socket.create_connection(("127.0.0.1", g.web_port))
        c.sendall(f"GET {bad} HTTP/1.1\r\nHost: 127.0.0.1:{g.web_port}\r\n"
                  "Connection: close\r\n\r\n".encode())
        head = c.recv(65536).decode(errors="replace")
        c.close()
        assert head.startswith("HTTP/1.1 404") or head.startswith("HTTP/1.1 400"), (bad, head)
        assert "root:" not in head


def raw_http(port, request):
    """Sends request to the HTTP listener; returns the answer's head and body as text."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall(request)
    except BrokenPipeError:
        pass
    out = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except (ConnectionResetError, socket.timeout):
        pass
    c.close()
    return out.decode(errors="replace")


def test_http_listener_refuses_before_the_body(gateway):
    """Another site's page that points its name at 127.0.0.1 (DNS rebinding), or any local
    client without a credential, gets a refusal before the gateway reads a body."""
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    port = g.web_port
    # Only this host's names.
    out = raw_http(port, b"GET / HTTP/1.1\r\nHost: evil.example:%d\r\nConnection: close\r\n\r\n"
                   % port)
    assert out.startswith("HTTP/1.1 421"), out
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        out = raw_http(port, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                       .encode())
        assert out.startswith("HTTP/1.1 200"), (host, out[:100])
    # A login from another site's page.
    body = b'{"user": "alice", "password": "correct horse"}'
    out = raw_http(port, b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   b"Origin: http://evil.example\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (port, len(body), body))
    assert out.startswith("HTTP/1.1 403") and "another site" in out, out
    # No credential: 401 at once, a megabyte announced or not.
    out = raw_http(port, b"POST /api/v1/mappings HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{" % port)
    assert out.startswith("HTTP/1.1 401"), out
    # A login is a few bytes.
    out = raw_http(port, b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{" % port)
    assert out.startswith("HTTP/1.1 413") and "4 KiB" in out, out


def test_a_password_changed_anywhere_ends_the_sessions(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    r = login(g.web, "alice", "correct horse")
    sid = re.match(r"portgate_session=([^;]+);", r.headers["Set-Cookie"])[1]
    s = Admin(host="127.0.0.1", port=g.web_port, headers={"Cookie": f"portgate_session={sid}"})
    assert s.get(f"{API}/mappings").status == 200
    passwd(g, "alice", "a new password")  # on the gateway, as after a leak
    assert s.get(f"{API}/mappings").status == 401
    g.wait_log("admin: user alice's session ended: the password or the second factor changed")


def test_bad_bytes_in_a_path_get_a_plain_404(admin_gateway):
    api = admin_gateway.api
    for path in (f"{API}/mappings/%FF", f"{API}/mappings/%C3%28/enable", f"{API}/tokens/%FF"):
        r = api.request("DELETE" if "tokens" in path else "GET", path)
        assert r.status in (404, 405), (path, r)
        assert r.json["error"], r
    r = api.request("DELETE", f"{API}/mappings/file", headers={"If-Match": '"\xff"'.encode("latin-1")
                                                              .decode("latin-1")})
    assert r.status in (412, 403), r


def login(web, user, password, source=None):
    return web.post(f"{API}/session", {"user": user, "password": password})


def test_login_session_csrf_and_logout(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    assert oct(os.stat(g.users).st_mode & 0o777) == "0o600"
    assert "correct horse" not in g.users.read_text()
    web = g.web
    r = login(web, "alice", "correct horse")
    assert r.status == 200, r
    cookie = r.headers["Set-Cookie"]
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in cookie
    sid = re.match(r"portgate_session=([A-Za-z0-9_-]{43});", cookie)[1]
    csrf = r.json["csrf"]
    s = Admin(host="127.0.0.1", port=g.web_port, headers={"Cookie": f"portgate_session={sid}"})
    assert s.get(f"{API}/session").json["user"] == "alice"
    assert s.get(f"{API}/mappings").status == 200
    # A change needs the CSRF token too.
    port = free_ports()
    r = s.post(f"{API}/mappings", tcp_map("x", port, 9))
    assert r.status == 403 and "CSRF" in r.json["error"], r
    r = s.post(f"{API}/mappings", tcp_map("x", port, 9), headers={"X-CSRF-Token": "A" * 43})
    assert r.status == 403, r
    r = s.post(f"{API}/mappings", tcp_map("x", port, 9), headers={"X-CSRF-Token": csrf})
    assert r.status == 201, r
    # Change the password: the old one stops working, the session goes on.
    r = s.post(f"{API}/password", {"old": "correct horse", "new": "short"},
               headers={"X-CSRF-Token": csrf})
    assert r.status == 400 and r.json["field"] == "new", r
    r = s.post(f"{API}/password", {"old": "correct horse", "new": "battery staple"},
               headers={"X-CSRF-Token": csrf})
    assert r.status == 204, r
    assert login(web, "alice", "correct horse").status == 401
    assert login(web, "alice", "battery staple").status == 200
    # Logout ends the session on the server, whatever the browser keeps.
    r = s.delete(f"{API}/session")
    assert r.status == 204 and "Max-Age=0" in r.headers["Set-Cookie"]
    assert s.get(f"{API}/mappings").status == 401
    g.wait_log("admin: user alice logged in from 127.0.0.1")
    g.wait_log("admin: user alice logged out")
    assert "correct horse" not in g.log() and "battery" not in g.log()


def test_api_tokens(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    r = subprocess.run([BINARY, "token", "-c", str(g.conf), "create", "ci"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert re.fullmatch(r"pgt_[A-Za-z0-9_-]{43}", token) and r.stdout.count("\n") == 1
    assert token not in g.users.read_text()
    bearer = Admin(host="127.0.0.1", port=g.web_port,
                   headers={"Authorization": f"Bearer {token}"})
    # A script needs no CSRF token: it has no cookie for a browser to send on its behalf.
    r = bearer.post(f"{API}/mappings", tcp_map("x", free_ports(), 9))
    assert r.status == 201, r
    assert bearer.get("/metrics").status == 200
    r = subprocess.run([BINARY, "token", "-c", str(g.conf), "list"], capture_output=True,
                       text=True)
    assert re.search(r"^ci\s+\d{4}-\d\d-\d\dT", r.stdout, re.M), r.stdout
    assert token not in r.stdout
    # Made and revoked through the API as well.
    made = bearer.post(f"{API}/tokens", {"name": "page"})
    assert made.status == 201 and made.json["token"].startswith("pgt_"), made
    assert bearer.post(f"{API}/tokens", {"name": "page"}).status == 409
    names = [t["name"] for t in bearer.get(f"{API}/tokens").json["tokens"]]
    assert names == ["ci", "page"]
    assert bearer.delete(f"{API}/tokens/page").status == 204
    assert bearer.delete(f"{API}/tokens/page").status == 404
    r = subprocess.run([BINARY, "token", "-c", str(g.conf), "revoke", "ci"], capture_output=True,
                       text=True)
    assert r.returncode == 0
    r = bearer.get(f"{API}/mappings")
    assert r.status == 401 and "not valid" in r.json["error"], r
    wrong = Admin(host="127.0.0.1", port=g.web_port, headers={"Authorization": "Bearer " + "x" * 47})
    assert wrong.get(f"{API}/mappings").status == 401
    assert token not in g.log()


def timed_login(web, user, password):
    t = time.monotonic()
    r = login(web, user, password)
    return r, time.monotonic() - t


def test_login_regulation(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    # A wrong user and a wrong password: the same answer, after the same work (an argon2id
    # check each; without it a wrong user would answer a hundred times faster).
    # One of each in turn, so that a load that comes and goes (other tests beside this one)
    # weighs on both alike; a factor of 10 still tells one check from none.
    pairs = [(timed_login(g.web, "nobody", "whatever1"), timed_login(g.web, "alice", "whatever1"))
             for _ in range(2)]
    (ru, tu), (rp, tp) = [tuple(zip(*side)) for side in zip(*pairs)]
    assert {r.status for r in ru + rp} == {401}
    assert {r.body for r in ru + rp} == {ru[0].body}
    assert min(tu) > min(tp) / 10 and min(tp) > min(tu) / 10, (tu, tp)
    # Per address: five failures from 127.0.0.1 (four made above), then refused, even with the
    # right password; another address still gets in.
    assert login(g.web, "carol", "whatever1").status == 401
    r = login(g.web, "alice", "correct horse")
    assert r.status == 429 and "too many failed logins" in r.json["error"], r
    g.wait_log("admin: 5 failed logins within 5 minutes from 127.0.0.1; refusing that "
               "address for 15 minutes")
    other = HTTPFrom("127.0.0.2", g.web_port)
    assert other.login("alice", "correct horse") == 200
    # Per user: five failures for alice from five addresses, then alice is refused everywhere.
    for i in range(3, 8):
        assert HTTPFrom(f"127.0.0.{i}", g.web_port).login("alice", "nope-nope") == 401
    assert HTTPFrom("127.0.0.9", g.web_port).login("alice", "correct horse") == 429
    assert g.log().count("refusing that user") == 1  # logged once


class HTTPFrom:
    """Logs in from a given loopback source address."""

    def __init__(self, source, port):
        self.source, self.port = source, port

    def login(self, user, password):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                       source_address=(self.source, 0))
        body = json.dumps({"user": user, "password": password})
        c.request("POST", f"{API}/session", body=body,
                  headers={"Content-Type": "application/json"})
        status = c.getresponse().status
        c.close()
        return status


def test_admin_refuses_non_loopback(tmp_path):
    conf = tmp_path / "p.conf"
    conf.write_text("[gateway]\nadmin = 0.0.0.0:8088\n" + file_map("f", free_ports(), 9))
    r = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "the admin interface listens on this host only" in r.stderr


def test_slow_client_times_out_and_blocks_nobody(admin_gateway):
    api = admin_gateway.api
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(str(admin_gateway.admin_socket))
    request = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
    start = time.time()
    closed_at = None
    waits = []
    for i, byte in enumerate(request):
        try:
            slow.send(bytes([byte]))
        except OSError:
            closed_at = time.time()
            break
        # Meanwhile everyone else is answered at once.
        t = time.time()
        assert api.get(f"{API}/status").status == 200
        waits.append(time.time() - t)
        slow.settimeout(1.0)
        try:
            if slow.recv(100) == b"":
                closed_at = time.time()
                break
        except socket.timeout:
            pass
    assert closed_at is not None, "the slow client was never cut off"
    assert closed_at - start < 10 + 3
    # A server that waited for the slow client's request would answer the others only once it
    # cut that client off (10 s). On a machine busy with other tests, one answer among them may
    # be late by a second or two; most are not.
    assert max(waits) < 5 and sorted(waits)[len(waits) // 2] < 0.5, waits


def test_hundred_concurrent_clients(admin_gateway):
    api = admin_gateway.api
    ports = free_ports(50)
    errors = []

    def client(i):
        try:
            if i < 50:
                r = api.post(f"{API}/mappings", tcp_map(f"c{i}", ports[i], 9))
                if r.status != 201:
                    errors.append(r)
            else:
                r = api.get(f"{API}/mappings")
                if r.status != 200:
                    errors.append(r)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(api.mappings()) == 51
    assert len(json.loads(admin_gateway.state.read_text())["mappings"]) == 50


def test_unix_socket_checks_the_peer(gateway):
    # A directory others may enter (pytest's are private), so that only the socket's own mode
    # and the peer check stand between another user and the API.
    d = tempfile.mkdtemp(prefix="portgate-peer-")
    os.chmod(d, 0o755)
    sock = os.path.join(d, "admin.sock")
    try:
        gateway(config=f"[gateway]\nadmin-socket = {sock}\n" + file_map("f", free_ports(), 9))
        assert oct(os.stat(sock).st_mode & 0o777) == "0o660"
        code = ("import sys; sys.path.insert(0, %r); from adminclient import Admin\n"
                "try:\n    print(Admin(%r).get('/api/v1/mappings').status)\n"
                "except PermissionError:\n    print('EACCES')"
                % (os.path.dirname(os.path.abspath(__file__)), sock))
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                     "/usr/bin/python3", "-c", code]
        r = subprocess.run(as_nobody, capture_output=True, text=True)
        assert r.stdout.strip() == "EACCES", r.stdout + r.stderr
        # With the mode opened up, a user that is neither root nor in its group is still
        # refused, by its credentials.
        os.chmod(sock, 0o666)
        r = subprocess.run(as_nobody, capture_output=True, text=True)
        assert r.stdout.strip() == "403", r.stdout + r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_connections_and_sessions(admin_gateway, udp_echo):
    g, api = admin_gateway, admin_gateway.api
    s = connect(g.file_port)
    s.sendall(b"hello")
    assert s.recv(16) == b"hello"
    r = api.get(f"{API}/connections?mapping=file")
    assert r.status == 200, r
    (c,) = r.json["connections"]
    assert c["mapping"] == "file" and c["proto"] == "tcp" and c["connected"] is True
    assert c["client"] == "127.0.0.1:%d" % s.getsockname()[1]
    assert c["target"] == f"127.0.0.1:{g.srv.port}"
    assert c["bytes-in"] == 5 and c["bytes-out"] == 5 and c["age"] >= 0, c
    assert api.get(f"{API}/connections?mapping=other").json["connections"] == []
    # Ending it from the API ends it for the client.
    r = api.delete(f"{API}/connections/{c['id']}")
    assert r.status == 204, r
    s.settimeout(5)
    try:
        assert s.recv(16) == b""
    except ConnectionResetError:
        pass
    s.close()
    assert api.get(f"{API}/connections").json["connections"] == []
    assert api.delete(f"{API}/connections/{c['id']}").status == 404
    assert api.delete(f"{API}/connections/nonsense").status == 404
    g.wait_log("ended through the admin API")
    # A UDP mapping's clients are its sessions.
    echo = udp_echo()
    uport = free_ports()
    r = api.post(f"{API}/mappings", {"name": "u", "proto": "udp", "listen": f"127.0.0.1:{uport}",
                                     "target": f"127.0.0.1:{echo.port}"})
    assert r.status == 201, r
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    u.sendto(b"ping", ("127.0.0.1", uport))
    assert u.recv(16) == b"ping"
    (se,) = api.get(f"{API}/sessions?mapping=u").json["sessions"]
    assert se["kind"] == "udp" and se["client"] == "127.0.0.1:%d" % u.getsockname()[1], se
    assert se["datagrams-in"] == 1 and se["datagrams-out"] == 1 and se["bytes-in"] == 4, se
    u.close()
    # The mapping's last activity is now, give or take the clock's second.
    last = api.mappings()["u"]["stats"]["last-activity"]
    assert abs(last - time.time()) < 3, last
    assert api.mappings()["file"]["stats"]["last-activity"] is not None


def cli(*args, env=None, **kw):
    e = dict(os.environ)
    e.pop("PORTGATE_TOKEN", None)
    e.update(env or {})
    return subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=30,
                          env=e, **kw)


def test_cli_map_status_conns(admin_gateway, tmp_path):
    g = admin_gateway
    sock = ["--socket", str(g.admin_socket)]
    port = free_ports()
    r = cli("map", "add", f"tcp:127.0.0.1:{port}=127.0.0.1:{g.srv.port},max-conns=4", *sock)
    assert r.returncode == 0, r.stderr
    assert f"added tcp-{port}" in r.stderr
    assert echo_roundtrip(port) == b"hello portgate"
    r = cli("map", "list", *sock)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "PROTO", "LISTEN", "TARGET", "STATE"]
    row = next(l for l in lines if l.startswith(f"tcp-{port} "))
    assert "listening" in row and row.rstrip().endswith("api")
    r = cli("map", "list", "--json", *sock)
    assert {m["name"] for m in json.loads(r.stdout)["mappings"]} == {"file", f"tcp-{port}"}
    r = cli("map", "show", f"tcp-{port}", *sock)
    assert "max-conns: 4" in r.stdout.splitlines() and "status.state: listening" in r.stdout
    # An error prints the message portgate check prints, and exits 1.
    bad = f"tcp:127.0.0.1:{port}=127.0.0.1:99999"
    r = cli("map", "add", bad, *sock)
    c = cli("check", "--map", bad)
    assert r.returncode == 1 and c.returncode == 1
    assert r.stderr.strip() == c.stderr.splitlines()[0], (r.stderr, c.stderr)
    r = cli("map", "add", f"tcp:127.0.0.1:{port}=127.0.0.1:9,name=again", *sock)
    assert r.returncode == 1 and "overlap [map tcp-" in r.stderr
    r = cli("map", "del", "file", *sock)
    assert r.returncode == 1 and "is defined in" in r.stderr
    r = cli("map", "show", "nope", *sock)
    assert r.returncode == 1 and 'no mapping called "nope"' in r.stderr
    assert cli("map", "frob", *sock).returncode == 2
    assert cli("map", "disable", f"tcp-{port}", *sock).returncode == 0
    assert is_refused(port)
    assert cli("map", "enable", f"tcp-{port}", *sock).returncode == 0
    # status, conns and --kill
    r = cli("status", *sock)
    assert r.returncode == 0 and re.search(r"mappings: 2 \(2 enabled; 1 from the config, 1 from "
                                           r"the API\)", r.stdout), r.stdout
    s = connect(port)
    s.sendall(b"x")
    assert s.recv(4) == b"x"
    r = cli("conns", f"tcp-{port}", *sock)
    assert r.returncode == 0, r.stderr
    (row,) = r.stdout.splitlines()[1:]
    cid = row.split()[0]
    assert re.fullmatch(r"\d+-\d+", cid) and f"tcp-{port}" in row
    r = cli("conns", "--kill", cid, *sock)
    assert r.returncode == 0, r.stderr
    s.settimeout(5)
    try:
        assert s.recv(4) == b""
    except ConnectionResetError:
        pass
    s.close()
    assert cli("conns", "--kill", cid, *sock).returncode == 1
    assert cli("map", "del", f"tcp-{port}", *sock).returncode == 0
    # The socket named by the config file, with -c.
    r = cli("map", "list", "-c", str(g.conf))
    assert r.returncode == 0 and "file" in r.stdout
    # Nobody there: exit status 1 and why.
    r = cli("status", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 1 and "is the gateway running" in r.stderr


def test_cli_over_http_with_a_token(gateway, tmp_path):
    g = http_gateway(gateway)
    url = ["--url", f"http://127.0.0.1:{g.web_port}"]
    r = cli("status", *url)
    assert r.returncode == 2 and "needs an API token" in r.stderr
    token = cli("token", "-c", str(g.conf), "create", "cli").stdout.strip()
    r = cli("map", "list", *url, env={"PORTGATE_TOKEN": token})
    assert r.returncode == 0 and "file" in r.stdout, r.stderr
    tf = tmp_path / "token"
    tf.write_text(token + "\n")
    r = cli("map", "add", f"udp:127.0.0.1:{free_ports()}=192.0.2.1:5000,name=rtp", *url,
            "--token-file", str(tf))
    assert r.returncode == 0, r.stderr
    r = cli("status", *url, env={"PORTGATE_TOKEN": "pgt_" + "A" * 43})
    assert r.returncode == 1 and "not valid" in r.stderr


def test_rtsp_sessions_are_listed(gateway, tcp_echo):
    from test_rtsp import Rtsp, fake_device, session_of
    device_rtp, player_rtp = free_ports(2), free_ports(2)
    dev = fake_device(tcp_echo, server_port=device_rtp[0])
    port = free_ports()
    g = gateway(config=f"[map enc]\nproto = rtsp\nlisten = 127.0.0.1:{port}\n"
                       f"target = 127.0.0.1:{dev.port}\nrtp-ports = 20600-20699\n")
    api = Admin(g.admin_socket)
    c = Rtsp(port)
    status, h, _ = c.ask("SETUP", f"rtsp://127.0.0.1:{port}/x",
                         Transport=f"RTP/AVP;unicast;client_port={player_rtp[0]}-{player_rtp[1]}")
    assert status == 200
    # The stream's RTP is the mapping's activity too, while its control connection is quiet.
    before = api.mappings()["enc"]["stats"]["last-activity"]
    time.sleep(1.1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as d, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as player:
        d.bind(("127.0.0.1", device_rtp[0]))
        player.bind(("127.0.0.1", player_rtp[0]))
        player.settimeout(5)
        d.sendto(b"\x80" + b"rtp" * 10, ("127.0.0.1", dev.client_ports[0][0]))
        assert player.recv(2048) == b"\x80" + b"rtp" * 10
    assert api.mappings()["enc"]["stats"]["last-activity"] > before
    (se,) = api.get(f"{API}/sessions?mapping=enc").json["sessions"]
    assert se["kind"] == "rtsp" and se["mapping"] == "enc" and se["client"] == "127.0.0.1", se
    assert se["target"] == f"127.0.0.1:{dev.port}"
    assert se["detail"] == f"session {session_of(h)}, 1 RTP stream, 1 connection", se
    st = api.mappings()["enc"]["stats"]
    assert st["sessions"] == 1 and st["rtsp-sessions"] == 1, st
    c.close()


def state_file(path, maps, revision=3):
    path.write_text(json.dumps({"portgate-state": 1, "revision": revision, "mappings": maps}))


def test_api_mapping_that_cannot_bind_at_start_is_kept_failed(gateway, tcp_echo, tmp_path):
    """A mapping made through the API whose port another program took while the gateway was
    down does not keep the others from running: it is listed as failed, with why, and runs
    once changed (or reloaded) when the port is free."""
    srv = tcp_echo()
    held_port, ok_port = free_ports(), free_ports()
    state = tmp_path / "kept.json"
    state_file(state, [tcp_map("held", held_port, srv.port), tcp_map("ok", ok_port, srv.port)])
    holder = socket.socket()
    holder.bind(("127.0.0.1", held_port))
    holder.listen()
    g = gateway(config=f"[gateway]\nstate = {state}\n")
    api = Admin(g.admin_socket)
    maps = api.mappings()
    assert maps["ok"]["status"] == {"state": "listening"}
    st = maps["held"]["status"]
    assert st["state"] == "failed" and "Address already in use" in st["reason"], st
    assert f"127.0.0.1:{held_port}" in st["reason"]
    assert echo_roundtrip(ok_port) == b"hello portgate"
    g.wait_log("map held: kept in the table but not running (made through the admin API)")
    assert re.search(r'^portgate_mapping_up\{mapping="held",proto="tcp"\} 0$',
                     api.get("/metrics").body, re.M)
    # Still there: the state file keeps it as it was made.
    assert [m["name"] for m in json.loads(state.read_text())["mappings"]] == ["held", "ok"]
    # The configuration given back as read keeps it as it is (failed, not refused).
    cfg = api.get(f"{API}/config")
    r = api.put(f"{API}/config", cfg.json, headers={"If-Match": cfg.etag})
    assert r.status == 200, r
    assert api.mappings()["held"]["status"]["state"] == "failed"
    # While the port is taken, a change of it is refused (409), and it stays failed.
    r = api.patch(f"{API}/mappings/held", {"max-conns": 5})
    assert r.status == 409 and r.json["field"] == "listen", r
    holder.close()
    out = g.reload()
    assert "configuration applied" in out
    assert api.mappings()["held"]["status"] == {"state": "listening"}
    assert echo_roundtrip(held_port) == b"hello portgate"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare (a network namespace where names cannot "
                           "resolve, so the test sends no DNS query)")
def test_api_mapping_whose_target_does_not_resolve_is_kept_failed(tmp_path):
    state = tmp_path / "state.json"
    state_file(state, [{"name": "cam", "proto": "tcp", "listen": "127.0.0.1:8081",
                        "target": "camera.portgate.test:80"},
                       {"name": "enc", "proto": "tcp", "listen": "127.0.0.1:8082",
                        "target": "192.0.2.10:80"}])
    sock = tmp_path / "admin.sock"
    conf = tmp_path / "p.conf"
    conf.write_text(f"[gateway]\nadmin = off\nadmin-socket = {sock}\nstate = {state}\n"
                    f"users-file = {tmp_path}/users\n")
    # check says what run will do
    r = subprocess.run(["unshare", "-n", BINARY, "check", "-c", str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert re.search(r"warning: .*state\.json: \[map cam\] would not run: target: cannot resolve "
                     r'"camera\.portgate\.test"', r.stderr), r.stderr
    log = tmp_path / "log"
    with open(log, "w") as lf:
        p = subprocess.Popen(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "-",
                              BINARY, "run", "-c", str(conf)], stdout=lf, stderr=lf)
    try:
        api = Admin(sock)
        deadline = time.time() + 10
        while True:
            try:
                maps = api.mappings()
                break
            except OSError:
                assert time.time() < deadline and p.poll() is None, log.read_text()
                time.sleep(0.05)
        st = maps["cam"]["status"]
        assert st["state"] == "failed" and st["reason"].startswith(
            'target: cannot resolve "camera.portgate.test"'), st
        assert maps["enc"]["status"] == {"state": "listening"}
        # A change through the API is checked strictly: the same name is refused, with why.
        r = api.patch(f"{API}/mappings/cam", {"max-conns": 3})
        assert r.status == 400 and r.json["field"] == "target", r
        r = api.patch(f"{API}/mappings/cam", {"target": "192.0.2.11:80"})
        assert r.status == 200 and r.json["status"] == {"state": "listening"}, r
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(15)


# ---------------------------------------------------------------- two-factor authentication

def totp(secret, t=None, steps=0):
    """RFC 6238's code of the base32 secret at Unix time t (now), steps steps later: HMAC-SHA1,
    6 digits, 30-second steps, computed here independently of the gateway."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((time.time() if t is None else t) // 30) + steps
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def test_totp_matches_rfc6238():
    """The helper the tests compute codes with, against RFC 6238 appendix B (its last 6 digits)."""
    secret = base64.b32encode(b"12345678901234567890").decode()
    for t, code in ((59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"),
                    (20000000000, "65353130")):
        assert totp(secret, t) == code[2:]


class AdminFrom(Admin):
    """The HTTP listener, from a given loopback source address (regulation counts per address)."""

    def __init__(self, source, port, headers=None):
        super().__init__(host="127.0.0.1", port=port, headers=headers)
        self.source = source

    def conn(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout,
                                          source_address=(self.source, 0))


def session_of(g, r, source="127.0.0.1"):
    """The page's session that login answer r made: a client that sends its cookie and its CSRF
    token."""
    assert r.status == 200, r
    sid = re.match(r"portgate_session=([^;]+);", r.headers["Set-Cookie"])[1]
    return AdminFrom(source, g.web_port, headers={"Cookie": f"portgate_session={sid}",
                                                  "X-CSRF-Token": r.json["csrf"]})


def enrol(s):
    """Turns on alice's second factor through session s: returns the secret (read from the
    otpauth URI the API answered), the time whose code confirmed it, and the recovery codes."""
    r = s.post(f"{API}/me/totp")
    assert r.status == 200, r
    m = re.fullmatch(r"otpauth://totp/portgate:alice\?secret=([A-Z2-7]{32})&issuer=portgate"
                     r"&algorithm=SHA1&digits=6&period=30", r.json["uri"])
    assert m, r.json["uri"]
    secret = m[1]
    assert r.json["secret"] == secret
    t0 = time.time()
    r = s.post(f"{API}/me/totp/confirm", {"code": totp(secret, t0)})
    assert r.status == 200, r
    return secret, t0, r.json["recovery-codes"]


def test_totp_enrol_login_replay_recovery_disable(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    port = g.web_port
    s = session_of(g, login(g.web, "alice", "correct horse"))
    other = session_of(g, login(g.web, "alice", "correct horse"))
    r = s.get(f"{API}/me/totp")
    assert r.status == 200 and r.json == {"enabled": False, "recovery-codes-left": 0,
                                          "pending": False}, r

    # Begin: a secret, its URI and QR code; a change, so it needs the CSRF token.
    no_csrf = AdminFrom("127.0.0.1", port, headers={"Cookie": s.headers["Cookie"]})
    assert no_csrf.post(f"{API}/me/totp").status == 403
    r = s.post(f"{API}/me/totp")
    assert r.status == 200, r
    secret = re.search(r"secret=([A-Z2-7]+)&", r.json["uri"])[1]
    assert len(base64.b32decode(secret)) == 20
    svg = r.json["qr-svg"]
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ')
    assert svg.count("<path") == 1 and svg.endswith("</svg>")
    size = r.json["qr"]["size"]
    assert size >= 21 + 8 and (size - 8 - 17) % 4 == 0, size  # a QR version, and its quiet zone
    assert f'viewBox="0 0 {size} {size}"' in svg and r.json["qr"]["path"] in svg
    assert s.get(f"{API}/me/totp").json["pending"] is True
    # Not on until confirmed: the password alone still logs in, the file has no secret.
    assert login(g.web, "alice", "correct horse").status == 200
    assert "totp" not in g.users.read_text()

    # Confirm: a wrong code (the secret's, but far off) is refused, the right one turns it on
    # and answers the recovery codes, once.
    r = s.post(f"{API}/me/totp/confirm", {"code": totp(secret, steps=10)})
    assert r.status == 400 and r.json["field"] == "code", r
    t0 = time.time()  # the codes below are of this time's step and the next
    r = s.post(f"{API}/me/totp/confirm", {"code": totp(secret, t0)})
    assert r.status == 200, r
    codes = r.json["recovery-codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[A-Z2-7]{10}", c) for c in codes), codes
    text = g.users.read_text()
    assert re.search(rf"^totp alice {secret} \d+$", text, re.M), text
    assert len(re.search(r"^recovery alice (.*)$", text, re.M)[1].split()) == 10
    assert not any(c in text for c in codes)
    assert oct(os.stat(g.users).st_mode & 0o777) == "0o600"
    g.wait_log("admin: user alice turned on two-factor authentication from 127.0.0.1")
    assert s.post(f"{API}/me/totp/confirm", {"code": totp(secret, t0)}).status == 409
    assert s.post(f"{API}/me/totp").status == 409  # on already
    r = s.get(f"{API}/me/totp")
    assert r.json == {"enabled": True, "recovery-codes-left": 10, "pending": False}, r
    # This session goes on; the one opened with the password alone ends.
    assert other.get(f"{API}/mappings").status == 401
    assert s.get(f"{API}/mappings").status == 200

    # Logging in now takes a code. From 127.0.0.2, to count its failures apart.
    web2 = AdminFrom("127.0.0.2", port)

    def login2(password, code=None, web=web2):
        body = {"user": "alice", "password": password}
        if code is not None:
            body["code"] = code
        return web.post(f"{API}/session", body)

    r = login2("correct horse")
    assert r.status == 401 and r.json["code-needed"] is True and "Set-Cookie" not in r.headers, r
    r = login2("wrong horse")
    assert r.status == 401 and "code-needed" not in r.json, r
    assert r.json["error"] == "wrong user or password"
    # A wrong password and a wrong code: the same answer.
    wrong_pw = login2("wrong horse", totp(secret, t0, steps=1))
    wrong_code = login2("correct horse", totp(secret, t0, steps=-10))
    assert wrong_pw.status == wrong_code.status == 401
    assert wrong_pw.body == wrong_code.body, (wrong_pw, wrong_code)
    assert wrong_pw.json["error"] == "wrong user, password or code"
    # The code that confirmed is used; the next step's works, once.
    assert login2("correct horse", totp(secret, t0)).body == wrong_code.body
    code = totp(secret, t0, steps=1)
    r = login2("correct horse", code)
    assert r.status == 200 and r.json["user"] == "alice", r
    r = login2("correct horse", code)
    assert r.status == 401 and r.body == wrong_code.body, r
    g.wait_log("admin: wrong second-factor code for user alice from 127.0.0.2: a code already used")
    g.wait_log("admin: wrong second-factor code for user alice from 127.0.0.2: a wrong code")

    # A recovery code works once, typed in lower case with a dash.
    web3 = AdminFrom("127.0.0.3", port)
    typed = codes[0][:5].lower() + "-" + codes[0][5:].lower()
    r = login2("correct horse", typed, web=web3)
    assert r.status == 200, r
    g.wait_log("admin: user alice used a recovery code from 127.0.0.3; 9 left")
    assert login2("correct horse", codes[0], web=web3).status == 401
    assert s.get(f"{API}/me/totp").json["recovery-codes-left"] == 9
    assert len(re.search(r"^recovery alice (.*)$", g.users.read_text(), re.M)[1].split()) == 9

    # A password change, on the page or with portgate passwd, keeps the second factor.
    r = s.post(f"{API}/password", {"old": "correct horse", "new": "battery staple"})
    assert r.status == 204, r
    passwd(g, "alice", "staple battery")
    assert re.search(rf"^totp alice {secret} \d+$", g.users.read_text(), re.M)
    assert login2("staple battery", web=AdminFrom("127.0.0.4", port)).json["code-needed"] is True
    s = session_of(g, login2("staple battery", codes[1], web=AdminFrom("127.0.0.4", port)),
                   "127.0.0.4")

    # Disable: a wrong password is refused (a failure like any), the right one turns it off.
    r = s.request("DELETE", f"{API}/me/totp", {"password": "wrong"})
    assert r.status == 401 and r.json["error"] == "wrong password or code", r
    assert s.request("DELETE", f"{API}/me/totp", {}).status == 400
    r = s.request("DELETE", f"{API}/me/totp", {"password": "staple battery"})
    assert r.status == 204, r
    g.wait_log("admin: user alice turned off two-factor authentication from 127.0.0.4, with the "
               "password")
    text = g.users.read_text()
    assert "totp" not in text and "recovery" not in text
    assert s.request("DELETE", f"{API}/me/totp", {"password": "staple battery"}).status == 404
    assert login(AdminFrom("127.0.0.5", port), "alice", "staple battery").status == 200

    # Counted for /metrics, and no secret, code or recovery code in any log line.
    metrics = s.get("/metrics").body
    for line in ("portgate_admin_totp_enrolled_total 1", "portgate_admin_totp_disabled_total 1",
                 "portgate_admin_recovery_codes_used_total 2",
                 "portgate_admin_totp_wrong_codes_total 5",
                 'portgate_admin_logins_total{result="failure"} 6'):
        assert re.search(rf"^{re.escape(line)}$", metrics, re.M), (line, metrics)
    log = g.log()
    assert secret not in log and code not in log
    assert not any(c in log or c.lower() in log for c in codes)


def test_totp_wrong_codes_are_failures_and_disable_by_code(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    s = session_of(g, login(g.web, "alice", "correct horse"))
    secret, t0, codes = enrol(s)
    # Five wrong codes for alice, each from its own address: alice is refused for a while,
    # even with the right password and code (and the wrong codes are logged, never shown).
    far = totp(secret, t0, steps=50)
    assert far not in (totp(secret, t0, steps=k) for k in (-1, 0, 1, 2))
    for i in range(5):
        r = AdminFrom(f"127.0.1.{i + 1}", g.web_port).post(
            f"{API}/session", {"user": "alice", "password": "correct horse", "code": far})
        assert r.status == 401, r
    g.wait_log("admin: 5 failed logins within 5 minutes for user alice; refusing that user")
    r = AdminFrom("127.0.1.9", g.web_port).post(
        f"{API}/session", {"user": "alice", "password": "correct horse",
                           "code": totp(secret, t0, steps=1)})
    assert r.status == 429, r
    assert far not in g.log()
    # The session goes on, but alice is banned: a disable by code waits too.
    assert s.request("DELETE", f"{API}/me/totp", {"code": totp(secret, t0, steps=1)}).status == 429


def test_totp_disable_by_code_and_endpoints(gateway):
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    s = session_of(g, login(g.web, "alice", "correct horse"))
    secret, t0, codes = enrol(s)
    # The step that confirmed is used: the same code cannot turn it off; the next one can.
    r = s.request("DELETE", f"{API}/me/totp", {"code": totp(secret, t0)})
    assert r.status == 401 and r.json["error"] == "wrong password or code", r
    r = s.request("DELETE", f"{API}/me/totp", {"code": totp(secret, t0, steps=1)})
    assert r.status == 204, r
    g.wait_log("admin: user alice turned off two-factor authentication from 127.0.0.1, with a code")
    assert "totp" not in g.users.read_text()
    # The session, not a token nor the unix socket, has a user.
    api = Admin(g.admin_socket)
    assert api.get(f"{API}/me/totp").status == 404
    token = subprocess.run([BINARY, "token", "-c", str(g.conf), "create", "ci"],
                           capture_output=True, text=True).stdout.strip()
    bearer = Admin(host="127.0.0.1", port=g.web_port,
                   headers={"Authorization": f"Bearer {token}"})
    r = bearer.post(f"{API}/me/totp")
    assert r.status == 400 and "token has no user" in r.json["error"], r
    assert s.get(f"{API}/me/nothing").status == 404
    assert s.put(f"{API}/me/totp", {}).status == 405
    assert s.get(f"{API}/me/totp/confirm").status == 405
    # An enrolment begun is confirmed in this session only, and recovery codes are shown once.
    secret2 = re.search(r"secret=([A-Z2-7]+)&", s.post(f"{API}/me/totp").json["uri"])[1]
    assert secret2 != secret
    s2 = session_of(g, login(g.web, "alice", "correct horse"))
    r = s2.post(f"{API}/me/totp/confirm", {"code": totp(secret2)})
    assert r.status == 409, r


def test_login_through_the_gateways_https_mapping_sees_the_remote_client(gateway, tmp_path):
    """From outside (docs/admin.md): a login that comes through the gateway's own https mapping
    (its Host one of admin-origins) is the remote client's, whom the mapping names last in
    X-Forwarded-For: its failures are regulated and logged by that address, so one client's
    ban does not lock out the others, who all reach the listener from the gateway's loopback
    address. A forwarded address is not taken from a request without such a Host."""
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    aport, gport = free_ports(2)
    g = gateway(config=f"[gateway]\nadmin = 127.0.0.1:{aport}\n"
                       f"admin-origins = https://localhost:{gport}\n"
                       f"[map admin]\nproto = https\nlisten = 127.0.0.1:{gport}\n"
                       f"target = 127.0.0.1:{aport}\ncert = {tmp_path}/c.crt\n"
                       f"key = {tmp_path}/c.key\n")
    passwd(g, "alice", "correct horse")

    def login_from(source, password, direct=False, user="alice"):
        url = (f"http://127.0.0.1:{aport}" if direct else f"https://localhost:{gport}")
        r = subprocess.run(["curl", "-s", "--cacert", f"{tmp_path}/c.crt", "--interface", source,
                            "-o", "/dev/null", "-w", "%{http_code}", "-H",
                            "Content-Type: application/json", "-H",
                            "X-Forwarded-For: 203.0.113.9", "--data",
                            json.dumps({"user": user, "password": password}),
                            f"{url}/api/v1/session"], capture_output=True, text=True, timeout=30)
        return r.stdout

    for _ in range(5):  # (not alice: her name would be banned too)
        assert login_from("127.0.0.2", "wrong one", user="mallory") == "401"
    g.wait_log("admin: failed login for a user name that does not exist from 127.0.0.2")
    g.wait_log("admin: 5 failed logins within 5 minutes for user (a name that is no user's) and "
               "from 127.0.0.2; refusing both")
    assert login_from("127.0.0.2", "correct horse") == "429"
    # Another remote client, through the same mapping (the same loopback peer): let in.
    assert login_from("127.0.0.3", "correct horse") == "200"
    g.wait_log("admin: user alice logged in from 127.0.0.3")
    # Straight to the listener, the X-Forwarded-For a client sends is not believed.
    assert login_from("127.0.0.4", "wrong one", direct=True) == "401"
    g.wait_log("admin: failed login for user alice from 127.0.0.4")
    assert "203.0.113.9" not in g.log()


def test_passwd_no_totp_takes_a_lost_second_factor_away(gateway):
    """portgate passwd --no-totp: a user who lost the phone and the recovery codes gets a new
    password and no second factor (the password alone logs in again); without the option a
    second factor is kept; a user without one is told so."""
    g = http_gateway(gateway)
    passwd(g, "alice", "correct horse")
    s = session_of(g, login(g.web, "alice", "correct horse"))
    enrol(s)
    assert login(g.web, "alice", "correct horse").status == 401  # a code is needed now
    passwd(g, "alice", "battery staple")
    assert "totp alice " in g.users.read_text()
    r = subprocess.run([BINARY, "passwd", "-c", str(g.conf), "--password-stdin", "--no-totp",
                        "alice"], input="staple battery\n", capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "second factor turned off" in r.stderr, r.stderr
    text = g.users.read_text()
    assert "totp alice" not in text and "recovery alice" not in text, text
    assert login(g.web, "alice", "staple battery").status == 200
    r = subprocess.run([BINARY, "passwd", "-c", str(g.conf), "--password-stdin", "--no-totp",
                        "alice"], input="staple battery\n", capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "the user had no second factor" in r.stderr, r.stderr
