"""proto = http and https: the HTTP-aware mapping through the real binary, with curl and raw
sockets as clients and a device's web server (httpdevice.py) behind it."""
import hashlib
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BINARY, free_ports
from httpdevice import Device, raw


@pytest.fixture
def device():
    devs = []

    def make(**kw):
        d = Device(**kw)
        devs.append(d)
        return d
    yield make
    for d in devs:
        d.close()


def http_map(name, port, dev_port, proto="http", extra=""):
    return (f"[map {name}]\nproto = {proto}\nlisten = 127.0.0.1:{port}\n"
            f"target = 127.0.0.1:{dev_port}\n" + extra)


def curl(*args, timeout=30):
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)
    return r


def headers_of(text):
    out = {}
    for line in text.splitlines()[1:]:
        k, _, v = line.partition(": ")
        out.setdefault(k.lower(), []).append(v)
    return out


def test_forwarding_headers_and_keepalive(gateway, device):
    dev = device()
    p = free_ports(2)
    g = gateway(config=http_map("web", p[0], dev.port)
                + http_map("behind-lb", p[1], dev.port, extra="trusted-proxies = 127.0.0.0/8\n"))
    url = f"http://localhost:{p[0]}"
    r = curl("-H", "X-Forwarded-For: 6.6.6.6", "-H", "Forwarded: for=6.6.6.6",
             "-H", "X-Forwarded-Proto: https", "-w", "[%{num_connects}]",
             f"{url}/echo", f"{url}/echo?2", f"{url}/echo?3")
    assert r.returncode == 0, r.stderr
    # One connection, three requests.
    assert re.findall(r"\[(\d)\]", r.stdout.decode()) == ["1", "0", "0"], r.stdout
    pages = re.sub(r"\[\d\]", "", r.stdout.decode()).split("GET /echo")
    h = headers_of("GET /echo" + pages[1])
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == [f"localhost:{p[0]}"]
    assert h["forwarded"] == [f'for=127.0.0.1;proto=http;host="localhost:{p[0]}"']
    assert h["host"] == [f"localhost:{p[0]}"]
    # From a trusted proxy, what it says is kept and ours appended.
    r = curl("-H", "X-Forwarded-For: 198.51.100.7", "-H", "Forwarded: for=198.51.100.7",
             f"http://localhost:{p[1]}/echo")
    h = headers_of(r.stdout.decode())
    assert h["x-forwarded-for"] == ["198.51.100.7, 127.0.0.1"]
    assert h["forwarded"] == [f'for=198.51.100.7, for=127.0.0.1;proto=http;host="localhost:{p[1]}"']
    st = g.map_stats("web")
    assert st["http requests"] == 3 and st["http requests answered by the gateway"] == 0


def test_pipelined_requests_and_bodies(gateway, device):
    big = os.urandom(3 << 20)
    dev = device(big=big)
    port = free_ports()
    gateway(config=http_map("web", port, dev.port))
    # Three requests in one write: three answers, in order.
    reqs = b"".join(f"GET /echo?{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(3))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(reqs + b"HEAD /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    assert [int(x) for x in re.findall(rb"GET /echo\?(\d)", out)] == [0, 1, 2]
    assert out.count(b"HTTP/1.1 200") == 4
    assert out.endswith(b"Content-Length: %d\r\n\r\n" % len(big))  # HEAD: no body follows
    # A chunked answer with trailers; a large one; uploads by length and chunked.
    r = curl(f"http://127.0.0.1:{port}/chunked", "--raw")
    assert r.stdout == (b"6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n")
    r = curl(f"http://127.0.0.1:{port}/big")
    assert r.stdout == big
    up = os.urandom(5 << 20)
    want = hashlib.sha256(up).hexdigest().encode()
    for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
        r = subprocess.run(["curl", "-sS", "--data-binary", "@-", *extra,
                            f"http://127.0.0.1:{port}/upload"], input=up, capture_output=True,
                           timeout=30)
        assert r.stdout == want, (extra, r.stderr)
    # Expect: 100-continue passes, and the body follows the device's 100.
    r = subprocess.run(["curl", "-sS", "-H", "Expect: 100-continue", "--data-binary", "@-", "-v",
                        f"http://127.0.0.1:{port}/upload"], input=up[:100000],
                       capture_output=True, timeout=30)
    assert r.stdout == hashlib.sha256(up[:100000]).hexdigest().encode()
    assert b"HTTP/1.1 100 Continue" in r.stderr


def test_redirects_and_cookies_name_the_gateway(gateway, device):
    dev = device()
    port = free_ports()
    gateway(config=http_map("web", port, dev.port))
    r = curl("-D", "-", "-o", "/dev/null", f"http://cam1.localhost:{port}/redirect",
             "--resolve", f"cam1.localhost:{port}:127.0.0.1")
    h = headers_of(r.stdout.decode())
    ext = f"http://cam1.localhost:{port}"
    assert h["location"] == [f"{ext}/login?x=1"]
    assert h["content-location"] == [f"{ext}/redirect"]
    assert h["refresh"] == [f"3; url={ext}/later"]
    assert h["set-cookie"] == ["sid=abc; Path=/; HttpOnly", "other=1; Domain=example.org"]
    # A URL that names another host is left as it is.
    r = curl("-D", "-", "-o", "/dev/null", f"http://127.0.0.1:{port}/elsewhere")
    assert headers_of(r.stdout.decode())["location"] == ["http://192.0.2.99/x"]
    # curl following the redirect stays on the gateway.
    r = curl("-L", "-w", "%{url_effective}", "-o", "/dev/null",
             f"http://cam1.localhost:{port}/redirect", "--resolve",
             f"cam1.localhost:{port}:127.0.0.1")
    assert r.stdout.decode() == f"{ext}/login?x=1"


@pytest.mark.parametrize("req,status,why", [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
     400, "Content-Length given twice"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400, "folded header line"),
    (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "bare CR"),
    (b"GET / HTTP/1.1\nHost: a\n\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "space before a header's colon"),
    (b"GET / HTTP/1.1\r\nBad\x01Name: a\r\nHost: a\r\n\r\n", 400, "bad header name"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host header"),
    (b"GET http://192.0.2.10/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "must be a path"),
    (b"CONNECT 192.0.2.10:22 HTTP/1.1\r\nHost: a\r\n\r\n", 405, "CONNECT and TRACE"),
    (b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405, "CONNECT and TRACE"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP version not supported"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501,
     "Transfer-Encoding the gateway does not know"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431, "longer than"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nContent-Length: 9\r\n\r\n0\r\n\r\nGET ",
     400, "an empty Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
     "Transfer-Encoding the gateway does not know"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello", 400,
     "a header name with _"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
     400, "a GET or HEAD with a body"),
    (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "HTTP version not supported"),
    (b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400, "bad Host"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_refusals_never_reach_the_device(gateway, device, req, status, why):
    dev = device()
    port = free_ports()
    g = gateway(config=http_map("web", port, dev.port))
    out = raw(port, req)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert why.encode() in out and b"Connection: close" in out, out
    assert dev.seen == []
    assert g.map_stats("web")["http requests answered by the gateway"] == 1
    g.wait_log(f"answered {status}: ")


def test_refusal_after_good_requests_keeps_order(gateway, device):
    """A bad request behind good ones: their answers first, then the gateway's, then the end."""
    dev = device()
    port = free_ports()
    gateway(config=http_map("web", port, dev.port))
    out = raw(port, b"GET /echo?1 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo?2 HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET / HTTP/1.1\r\nHost: b\r\n\r\nGET /echo?4 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [m for m in re.findall(rb"HTTP/1.1 (\d+)", out)] == [b"200", b"200", b"421"], out
    assert [s[1] for s in dev.seen] == ["/echo?1", "/echo?2"]


def test_slow_head_gets_408(gateway, device):
    dev = device()
    port = free_ports()
    g = gateway(config=http_map("web", port, dev.port, extra="header-timeout = 1s\n"))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # and never the end of the head
    out = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        out += d
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert 0.8 < time.time() - t0 < 4
    # One that says nothing at all is cut off the same way.
    out = raw(port, b"")
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert dev.seen == []
    g.wait_log("answered 408: the request's head did not come within 1000ms")


@pytest.mark.parametrize("proto", ["http", "https"])
def test_websocket_passes_through(gateway, device, tmp_path, proto):
    """A websocket's upgrade, then its bytes both ways, on http and through TLS on https."""
    dev = device()
    port = free_ports()
    extra = ""
    if proto == "https":
        assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                              capture_output=True).returncode == 0
        extra = f"cert = {tmp_path}/c.crt\nkey = {tmp_path}/c.key\n"
    g = gateway(config=http_map("web", port, dev.port, proto, extra))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if proto == "https":
        ctx = ssl.create_default_context(cafile=str(tmp_path / "c.crt"))
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
              b"\x81\x85early")  # a frame right behind the request waits for the 101
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    rest = head.split(b"\r\n\r\n", 1)[1]
    while len(rest) < 7:
        rest += s.recv(4096)
    assert rest == b"\x81\x85early"
    payload = os.urandom(200000)
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += s.recv(65536)
    assert got == payload
    s.close()
    assert g.map_stats("web")["http upgrades"] == 1


def test_https_with_hsts_and_redirect_from_http(gateway, device, tmp_path):
    dev = device()
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    crt, key = tmp_path / "c.crt", tmp_path / "c.key"
    p = free_ports(2)
    g = gateway(config=http_map("secure", p[0], dev.port, "https",
                                f"cert = {crt}\nkey = {key}\ntarget-host = 192.0.2.10\n")
                + http_map("plain", p[1], dev.port, extra=f"redirect-https = {p[0]}\n"))
    base = ["--cacert", str(crt)]
    r = curl(*base, "-D", "-", f"https://localhost:{p[0]}/echo")
    text = r.stdout.decode()
    h = headers_of(text.split("\r\n\r\n")[0])
    assert h["strict-transport-security"] == ["max-age=31536000"]
    body = headers_of(text.split("\r\n\r\n", 1)[1])
    assert body["host"] == ["192.0.2.10"]  # target-host
    assert body["x-forwarded-proto"] == ["https"]
    assert body["x-forwarded-host"] == [f"localhost:{p[0]}"]
    # The device's redirect naming target-host comes back as https on the external name.
    r = curl(*base, "-D", "-", "-o", "/dev/null", f"https://localhost:{p[0]}/redirect")
    assert headers_of(r.stdout.decode())["location"][0].startswith(f"https://localhost:{p[0]}/")
    # http to https, the path kept; curl -L ends on the device through https.
    r = curl(*base, "-L", "-w", "%{url_effective} %{http_code}", "-o", "/dev/null",
             f"http://localhost:{p[1]}/echo?a=1")
    assert r.stdout.decode() == f"https://localhost:{p[0]}/echo?a=1 200", r.stderr
    out = raw(p[1], b"GET /x HTTP/1.1\r\nHost: localhost:" + str(p[1]).encode() + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 308 ")
    assert f"Location: https://localhost:{p[0]}/x\r\n".encode() in out
    st = g.map_stats("secure")
    assert st["tls handshakes"] >= 3 and st["http requests"] >= 3


def test_check_refuses_bad_http_keys(tmp_path):
    cases = [
        ("target-host = a b\n", "target-host: \"a b\""),
        ("trusted-proxies = 10.0.0.1/8\n", "trusted-proxies"),
        ("header-timeout = 10ms\n", "1s or more"),
        ("max-header-size = 100\n", "from 1024 to 61440"),
        ("redirect-https = a/b\n", "the https twin's PORT"),
        ("hsts = forever\n", "hsts applies to https mappings only"),
        ("users = alice\n", "users: applies with auth = login"),
        ("auth = client-cert\n", "\"client-cert\": login (the gateway's login page"),
        ("acme-webroot = acme\n", 'acme-webroot: "acme": an absolute path'),
        (f"acme-webroot = {tmp_path}/none\n",
         f'acme-webroot: "{tmp_path}/none": No such file or directory'),
        (f"acme-webroot = {BINARY}\n", f'acme-webroot: "{BINARY}": not a directory'),
    ]
    for keys, want in cases:
        conf = tmp_path / "c.conf"
        conf.write_text("[gateway]\nadmin = off\n" + http_map("w", 8080, 80) + keys)
        out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert out.returncode == 1 and want in out.stderr, (keys, out.stderr)
    conf.write_text("[gateway]\nadmin = off\n" + http_map(
        "w", 8080, 80, extra="trusted-proxies = 192.0.2.0/24\ntarget-host = cam:80\n"))
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # trusted-proxies is every TCP-based mapping's (accept-proxy's too): with the general keys.
    assert ("connect-timeout=10s trusted-proxies=192.0.2.0/24 target-host=cam:80 "
            "header-timeout=10s keep-alive-timeout=1m max-header-size=16384") in out.stdout
    conf.write_text("[gateway]\nadmin = off\n" + http_map("w", 8080, 80, extra=f"acme-webroot = {tmp_path}\n"))
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0 and f"acme-webroot={tmp_path} " in out.stdout, out


def test_check_warns_about_exposed_devices(tmp_path):
    """check warns (and exits 0) when an http or rtsp mapping faces the internet with no allow
    list, and when TLS ends here with the plain leg going to a public address."""
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    cert = f"cert={tmp_path}/c.crt,key={tmp_path}/c.key"
    cases = [
        ("http:0.0.0.0:8080=192.0.2.10:80", "http on 0.0.0.0:8080 (every address) faces the internet"),
        ("rtsp:[::]:554=192.0.2.10:554", "rtsp on [::]:554 (every address) faces the internet"),
        ("http:203.0.113.1:80=192.0.2.10:80", "http on 203.0.113.1:80 faces the internet"),
        (f"https:10.0.0.1:443=203.0.113.9:80,{cert}", "to 203.0.113.9, which is not a private"),
        (f"https:0.0.0.0:443=10.0.0.5:80,{cert},device-auth=admin:pw",
         "its device-auth logs every client in to the device as its user"),
    ]
    for spec, want in cases:
        out = subprocess.run([BINARY, "check", "--map", spec], capture_output=True, text=True)
        assert out.returncode == 0 and f"warning: --map 1: [map cli-1] " in out.stderr, out
        assert want in out.stderr, (spec, out.stderr)
    quiet = ["http:127.0.0.1:8080=192.0.2.10:80", "http:10.0.0.1:80=192.168.1.10:80",
             "http:0.0.0.0:8080=192.0.2.10:80,allow=198.51.100.0/24",
             "tcp:0.0.0.0:8080=192.0.2.10:80", f"https:0.0.0.0:443=10.0.0.5:80,{cert}",
             f"https:0.0.0.0:443=10.0.0.5:80,{cert},device-auth=a:b,allow=198.51.100.0/24"]
    for spec in quiet:
        out = subprocess.run([BINARY, "check", "--map", spec], capture_output=True, text=True)
        assert out.returncode == 0 and "warning" not in out.stderr, (spec, out.stderr)


def test_what_the_device_gets_is_framed_anew(gateway, device):
    """Chunk extensions and trailers never reach the device, nor the client's own framing
    headers: what it reads is what the gateway read. An h2c upgrade is dropped (HTTP/1.1 goes
    on); a chunked body hiding a request in its 'trailers' is refused."""
    dev = device()
    port = free_ports()
    g = gateway(config=http_map("web", port, dev.port))
    body = b"5;ext=\"x\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    out = raw(port, b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    b"Connection: close\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 200"), out
    assert out.endswith(hashlib.sha256(b"hello world").hexdigest().encode())
    method, path, headers = dev.seen[-1]
    assert headers.get("Transfer-Encoding") == "chunked" and "X-Trailer" not in headers
    # Leading zeros of a Content-Length are the gateway's to read, not the device's.
    out = raw(port, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n"
                    b"Connection: close\r\n\r\nhello")
    assert out.endswith(hashlib.sha256(b"hello").hexdigest().encode()), out
    assert dev.seen[-1][2]["Content-Length"] == "5"
    # h2c: the upgrade is not passed on; the request is answered over HTTP/1.1.
    out = raw(port, b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
                    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200"), out
    assert b"Upgrade" not in out.split(b"\r\n\r\n", 1)[1] and b"HTTP2-Settings" not in out
    # A request smuggled where trailers go.
    n = len(dev.seen)
    out = raw(port, b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"0\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(dev.seen) == n or dev.seen[-1][1] != "/admin"
    g.wait_log("bad trailer line")


def test_refusal_reaches_a_client_that_keeps_sending(gateway, device):
    """The gateway's answer, then its FIN; what the client still sends is dropped rather than
    answered with a reset that would destroy the answer."""
    dev = device()
    port = free_ports()
    gateway(config=http_map("web", port, dev.port))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
    s.sendall(os.urandom(300000))  # an upload the gateway never reads
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    assert out.startswith(b"HTTP/1.1 400 ") and out.endswith(b"Content-Length given twice\n"), out
    assert dev.seen == []


def test_keepalive_timeout_and_long_redirect(gateway, device):
    dev = device()
    p = free_ports(2)
    g = gateway(config=http_map("web", p[0], dev.port, extra="keep-alive-timeout = 1s\n")
                + http_map("plain", p[1], dev.port, extra="redirect-https = 443\n"))
    s = socket.create_connection(("127.0.0.1", p[0]), timeout=5)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    t0 = time.time()
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    assert out.startswith(b"HTTP/1.1 200") and 0.8 < time.time() - t0 < 4, out
    g.wait_log("idle between requests (keep-alive-timeout)")
    out = raw(p[1], b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414 "), out[:100]
    out = raw(p[1], b"GET /" + b"a" * 1500 + b" HTTP/1.1\r\nHost: a:80\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 308 ") and b"Location: https://a/" + b"a" * 1500 + b"\r\n" in out


def _get(port, host, path="/echo", version="1.1"):
    hdr = f"Host: {host}\r\n" if host is not None else ""
    return raw(port, f"GET {path} HTTP/{version}\r\n{hdr}Connection: close\r\n\r\n".encode())


def test_host_routing_shares_a_port(gateway, device):
    """Mappings with host = share a port: each request goes to the device its Host names; an
    unknown host gets 404 from the gateway, and a connection that says nothing reaches no
    device at all."""
    d1, d2, d3 = device(), device(), device()
    p = free_ports(2)
    conf = (http_map("cam1", p[0], d1.port, extra="host = cam1.example.org\n")
            + http_map("cams", p[0], d2.port, extra="host = cam2.example.org, *.cams.example.org\n"))
    g = gateway(config=conf)
    for host, dev, n in [("cam1.example.org", d1, 1), ("CAM2.Example.org.", d2, 1),
                         (f"x.cams.example.org:{p[0]}", d2, 2)]:
        out = _get(p[0], host)
        assert b" 200 " in out.split(b"\r\n")[0], (host, out[:300])
        assert len(dev.seen) == n, host
    # Keep-alive on one connection, with curl.
    r = curl("-w", "[%{num_connects}]", "--resolve", f"cam1.example.org:{p[0]}:127.0.0.1",
             f"http://cam1.example.org:{p[0]}/echo", f"http://cam1.example.org:{p[0]}/echo")
    assert re.findall(r"\[(\d)\]", r.stdout.decode()) == ["1", "0"], r.stdout
    assert len(d1.seen) == 3
    # Names no mapping has: the gateway answers, no device sees them.
    for host, status in [("other.example.org", 404), ("a.b.cams.example.org", 404),
                         ("cams.example.org", 404)]:
        out = _get(p[0], host)
        assert out.startswith(b"HTTP/1.1 %d " % status), (host, out[:300])
        assert f"no device here answers for host {host}".encode() in out
    out = _get(p[0], None, version="1.0")
    assert out.startswith(b"HTTP/1.1 400 ") and b"a Host header is needed" in out
    # A second host on one connection is another device's: 421, as on any http mapping.
    out = raw(p[0], b"GET /echo HTTP/1.1\r\nHost: cam1.example.org\r\n\r\n"
              b"GET /echo HTTP/1.1\r\nHost: cam2.example.org\r\n\r\n")
    assert out.count(b"HTTP/1.0 200") + out.count(b"HTTP/1.1 200") == 1
    assert b"HTTP/1.1 421 " in out
    assert len(d1.seen) == 4 and len(d2.seen) == 2
    # A mapping without host answers for every other name; a reload adds it to the port.
    tail = g.reload(config=conf + http_map("rest", p[0], d3.port))
    assert "configuration applied" in tail, tail
    assert b" 200 " in _get(p[0], "other.example.org").split(b"\r\n")[0]
    assert b" 200 " in _get(p[0], None, version="1.0").split(b"\r\n")[0]
    assert len(d3.seen) == 2 and len(d1.seen) == 4 and len(d2.seen) == 2
    # A client that connects and says nothing costs no device a connection, and gets 408.
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(8)
    quiet.setblocking(False)
    tail = g.reload(config=conf + http_map("quiet", p[1], quiet.getsockname()[1],
                                          extra="header-timeout = 1s\n"))
    assert "configuration applied" in tail, tail
    s = socket.create_connection(("127.0.0.1", p[1]), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHo")
    start = time.time()
    out = s.recv(4096)
    assert out.startswith(b"HTTP/1.1 408 "), out
    assert 0.8 < time.time() - start < 3
    s.close()
    # Nor does a first request the gateway refuses.
    out = raw(p[1], b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 "), out
    with pytest.raises(BlockingIOError):
        quiet.accept()
    quiet.close()
    # Until its mapping is chosen, a connection holds a place of the port's first mapping:
    # its max-conns bound the clients that have not said what they want.
    tail = g.reload(config=http_map("cam1", p[0], d1.port,
                                    extra="host = cam1.example.org\nmax-conns = 2\n")
                    + http_map("cams", p[0], d2.port, extra="host = cam2.example.org\n"))
    assert "configuration applied" in tail, tail
    slow = [socket.create_connection(("127.0.0.1", p[0]), timeout=5) for _ in range(2)]
    for c in slow:
        c.sendall(b"GET / HTTP/1.1\r\n")
    time.sleep(0.2)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        third = socket.create_connection(("127.0.0.1", p[0]), timeout=5)
        time.sleep(0.2)
        third.sendall(b"GET / HTTP/1.1\r\n")
        if third.recv(100) == b"":
            raise ConnectionResetError
    g.wait_log("map cam1: tcp refused 127.0.0.1:")
    assert "max-conns reached" in g.log()
    for c in slow:
        c.sendall(b"Host: cam2.example.org\r\nConnection: close\r\n\r\n")
        assert b" 404 " in c.recv(100)  # /: the device's answer, through
        c.close()
    assert b" 200 " in _get(p[0], "cam2.example.org").split(b"\r\n")[0]


def test_https_host_routing_by_sni(gateway, device, tmp_path):
    """https mappings share a port: the server name chooses the certificate and the device, and
    a Host that names another mapping than the server name gets 421."""
    d1, d2 = device(), device()
    for n in ("cam1", "cam2"):
        r = subprocess.run([BINARY, "cert", "-o", str(tmp_path / n), f"{n}.example.org"],
                           capture_output=True)
        assert r.returncode == 0, r.stderr
    port = free_ports()
    g = gateway(config="".join(
        http_map(n, port, d.port, "https",
                 f"cert = {tmp_path}/{n}.crt\nkey = {tmp_path}/{n}.key\nhost = {n}.example.org\n")
        for n, d in (("cam1", d1), ("cam2", d2))))
    for n, d in (("cam1", d1), ("cam2", d2)):
        url = f"https://{n}.example.org:{port}/echo"
        r = curl("--cacert", str(tmp_path / f"{n}.crt"), "--resolve",
                 f"{n}.example.org:{port}:127.0.0.1", "-w", "%{http_code}", "-o", "/dev/null", url)
        assert r.stdout == b"200", (n, r.stderr)
        assert len(d.seen) == 1
    r = curl("--cacert", str(tmp_path / "cam1.crt"), "--resolve",
             f"cam1.example.org:{port}:127.0.0.1", "-H", "Host: cam2.example.org",
             f"https://cam1.example.org:{port}/echo")
    assert r.stdout.startswith(b"421 Misdirected Request: this connection was opened for "
                               b"cam1.example.org"), r.stdout
    # No server name (an address): the Host chooses.
    r = curl("-k", "-H", "Host: cam2.example.org", "-w", "%{http_code}", "-o", "/dev/null",
             f"https://127.0.0.1:{port}/echo")
    assert r.stdout == b"200" and len(d2.seen) == 2 and len(d1.seen) == 1
    assert g.map_stats("cam2")["http requests"] == 2


def test_check_refuses_ports_that_cannot_be_shared(tmp_path):
    for n in ("cam1", "cam2"):
        assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / n), f"{n}.example.org"],
                              capture_output=True).returncode == 0

    def tls(n, extra=""):
        return f"cert = {tmp_path}/{n}.crt\nkey = {tmp_path}/{n}.key\n" + extra
    cases = [
        (http_map("a", 8080, 80) + http_map("b", 8080, 81),
         "neither has a host key, so both would answer for every host"),
        (http_map("a", 8080, 80, extra="host = x.example.org\n")
         + http_map("b", 8080, 81, extra="host = *.example.org\n"),
         "both answer for host x.example.org"),
        (http_map("a", 8080, 80, extra="host = x.example.org\n")
         + http_map("b", 8080, 81, "tcp"), "overlap [map a]"),
        (http_map("a", 8080, 80, "https", tls("cam1", "host = cam1.example.org\n"))
         + http_map("b", 8080, 81, "https", tls("cam2", "host = cam2.example.org\nmin-tls = 1.3\n")),
         "must have the same min-tls"),
        (http_map("a", 8443, 80, "https", tls("cam1", "host = cam1.example.org, cam9.example.org\n")),
         "host: cam9.example.org is not a name of any certificate of the mapping"),
        (http_map("a", 8080, 80, extra="host = a b\n"), "host: \"a b\""),
        (http_map("a", 8080, 80, extra="host = x.org, X.org\n"), "\"x.org\": given twice"),
        (http_map("a", 8080, 80, extra="host = -x.org\n"), "a host name (cam1.example.org)"),
    ]
    conf = tmp_path / "c.conf"
    for text, want in cases:
        conf.write_text("[gateway]\nadmin = off\n" + text)
        out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert out.returncode == 1 and want in out.stderr, (text, out.stderr)
    conf.write_text("[gateway]\nadmin = off\n"
                    + http_map("a", 8443, 80, "https", tls("cam1", "host = cam1.example.org\n"))
                    + http_map("b", 8443, 81, "https", tls("cam2", "host = cam2.example.org\n"))
                    + http_map("c", 8080, 81, extra="host = *.Example.org.\n"))
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "host=*.example.org target-host" not in out.stdout  # host comes first
    assert "host=*.example.org header-timeout=10s" in out.stdout


def acme_webroot(tmp_path):
    """A webroot as certbot --webroot and lego --http.webroot leave it during a validation, with
    what an operator's mistakes or an attacker's links could put there beside the token."""
    root = tmp_path / "acme"
    chal = root / ".well-known" / "acme-challenge"
    chal.mkdir(parents=True)
    token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    keyauth = token + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
    (chal / token).write_text(keyauth)
    secret = tmp_path / "secret"
    secret.write_text("not for the outside")
    (chal / "link").symlink_to(secret)
    (chal / "dir").mkdir()
    (chal / "big").write_bytes(b"a" * 4097)
    (chal / "max").write_bytes(b"m" * 4096)
    return root, token, keyauth


def test_acme_challenges_answered_by_the_gateway(gateway, device, tmp_path):
    """acme-webroot: GET and HEAD under /.well-known/acme-challenge/ are answered from the
    webroot, on the same keep-alive connection, ahead of redirect-https; the device never sees
    them; everything that is not a plain file with a base64url name gets 404 (500 when too
    large), and the log says why. Without acme-webroot the device answers as before."""
    dev = device()
    root, token, keyauth = acme_webroot(tmp_path)
    p = free_ports(3)
    g = gateway(config=http_map("web", p[0], dev.port, extra=f"acme-webroot = {root}\n")
                + http_map("redir", p[1], dev.port,
                           extra=f"acme-webroot = {root}\nredirect-https = 443\n")
                + http_map("plain", p[2], dev.port))
    base = f"http://localhost:{p[0]}/.well-known/acme-challenge/"
    cases = [(token, 200), ("a.b", 404), ("a%2Fb", 404), ("a?b=1", 404), ("x" * 129, 404),
             ("link", 404), ("dir", 404), ("big", 500), ("missing", 404), ("max", 200),
             ("", 404)]
    # A challenge that is a connection's first request is answered before any device is
    # connected to (so a renewal works while the device is off), and the connection closes.
    r = curl("--path-as-is", "-w", "\n[%{http_code} %{num_connects} %{content_type}]\n",
             *[base + t for t, _ in cases])
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    got = re.findall(r"\[(\d+) (\d) ([^\]]*)\]", out)
    assert [int(c) for c, _, _ in got] == [s for _, s in cases], out
    assert [n for _, n, _ in got] == ["1"] * len(cases), out
    assert got[0][2] == "text/plain" and out.startswith(keyauth + "\n["), out
    assert "m" * 4096 + "\n[200" in out
    assert "not for the outside" not in out and "a" * 4097 not in out
    # Logged as refusals are, at most a line a second per worker (the unit tests see every
    # reason).
    g.wait_log("answered 404 to an ACME challenge: not a token (1 to 128 characters")
    time.sleep(1.1)
    assert curl(base + "big").stdout == b"500 Internal Server Error\n"
    g.wait_log("answered 500 to an ACME challenge: the token's file is larger than 4096 bytes")
    st = g.map_stats("web")
    assert st["http acme challenges answered"] == 2, st
    assert st["http requests answered by the gateway"] == 10, st
    assert st["http requests"] == 0, st

    # A device that is off: the challenge is answered all the same.
    down = socket.socket()
    down.bind(("127.0.0.1", 0))
    down_port = down.getsockname()[1]
    down.close()
    tail = g.reload(config=http_map("web", p[0], dev.port, extra=f"acme-webroot = {root}\n")
                    + http_map("redir", p[1], down_port,
                               extra=f"acme-webroot = {root}\nredirect-https = 443\n")
                    + http_map("plain", p[2], dev.port))
    assert "configuration applied" in tail, tail
    r = curl("-w", "[%{http_code}]", f"http://localhost:{p[1]}/.well-known/acme-challenge/{token}")
    assert r.stdout.decode() == keyauth + "[200]", r.stdout

    # Pipelined behind requests for the device and each other: answered in order, and the
    # connection goes on.
    chal = b"/.well-known/acme-challenge/" + token.encode()
    out = raw(p[0], b"GET /echo?1 HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"HEAD " + chal + b" HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET " + chal + b" HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET /echo?4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    bodies = re.split(rb"HTTP/1.1 200 ", out)[1:]
    assert len(bodies) == 4, out
    assert b"GET /echo?1 " in bodies[0]
    # HEAD: the length of the body it does not get.
    assert bodies[1] == (b"OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         b"Cache-Control: no-store\r\n\r\n" % len(keyauth)), out
    assert bodies[2].endswith(b"\r\n\r\n" + keyauth.encode()), out
    assert b"GET /echo?4 " in bodies[3], out
    # HTTP/1.0 without keep-alive: the answer, then the end of the connection.
    out = raw(p[0], b"GET /.well-known/acme-challenge/" + token.encode() + b" HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in out
    assert out.endswith(keyauth.encode()), out
    # A method other than GET and HEAD is refused, and the connection ends.
    out = raw(p[0], b"POST /.well-known/acme-challenge/" + token.encode()
                    + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    assert out.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD\r\n" in out, out
    assert not [s for s in dev.seen if "acme-challenge" in s[1]], dev.seen

    # Ahead of redirect-https: the challenge is answered, anything else redirected.
    r = curl("-w", "\n[%{http_code}]", f"http://localhost:{p[1]}/.well-known/acme-challenge/{token}",
             f"http://localhost:{p[1]}/.well-known/other")
    assert r.stdout.decode().startswith(keyauth + "\n[200]"), r.stdout
    assert r.stdout.decode().endswith("[308]"), r.stdout
    # No acme-webroot: the device's, as any other request.
    r = curl("-w", "[%{http_code}]", f"http://localhost:{p[2]}/.well-known/acme-challenge/{token}")
    assert r.stdout == b"no such page\n[404]", r.stdout
    assert dev.seen[-1][1] == f"/.well-known/acme-challenge/{token}"


def test_acme_challenge_on_https(gateway, device, tmp_path):
    """An https mapping answers challenges too (an ACME server that follows the redirect of an
    http twin lands there), with HSTS like every answer of it."""
    dev = device()
    root, token, keyauth = acme_webroot(tmp_path)
    assert subprocess.run([BINARY, "cert", "-o", str(tmp_path / "c"), "localhost"],
                          capture_output=True).returncode == 0
    crt, key = tmp_path / "c.crt", tmp_path / "c.key"
    port = free_ports()
    g = gateway(config=http_map("secure", port, dev.port, "https",
                                f"cert = {crt}\nkey = {key}\nacme-webroot = {root}\n"))
    base = f"https://localhost:{port}"
    r = curl("--cacert", str(crt), "-D", "-", "-w", "[%{num_connects}]",
             f"{base}/.well-known/acme-challenge/{token}", f"{base}/.well-known/acme-challenge/link",
             f"{base}/echo")
    text = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert text.startswith("HTTP/1.1 200 OK\r\n"), text
    head, rest = text.split("\r\n\r\n", 1)
    h = headers_of(head)
    assert h["content-type"] == ["text/plain"] and h["content-length"] == [str(len(keyauth))]
    assert h["strict-transport-security"] == ["max-age=31536000"]
    assert rest.startswith(keyauth + "[1]"), rest
    # Each a connection's first request: answered before a device is connected to, then closed.
    assert "HTTP/1.1 404 Not Found" in rest and "GET /echo " in rest and rest.endswith("[1]")
    assert [s[1] for s in dev.seen] == ["/echo"]
    st = g.map_stats("secure")
    assert st["http acme challenges answered"] == 1 and st["tls handshakes"] == 3, st
    g.wait_log("answered 404 to an ACME challenge: the token's file is a symbolic link")


def test_device_auth_digest(gateway, device):
    """device-auth: the gateway answers the device's Digest challenge (SHA-256 chosen over MD5
    and Basic), the client never sees the 401 nor needs the password, a body is sent again
    whole, later requests carry credentials at once, a stale nonce is answered once more, and a
    client's own Authorization never reaches the device."""
    dev = device()
    p = free_ports(2)
    g = gateway(config=http_map("cam", p[0], dev.port, extra="device-auth = cam:s3cret\n")
                + http_map("wrong", p[1], dev.port, extra="device-auth = cam:nope\n"))
    url = f"http://127.0.0.1:{p[0]}"
    r = curl("-w", "[%{http_code} %{num_connects}]", "-u", "mallory:guess", f"{url}/digest/echo",
             f"{url}/digest/echo?2", "-d", "x" * 3000, "-H", "Expect:", f"{url}/digest/up")
    out = r.stdout.decode()
    assert out.count("[200 ") == 3 and "[200 1]" in out and "login needed" not in out, out
    assert hashlib.sha256(b"x" * 3000).hexdigest() in out
    # One 401 for the connection, then credentials on every request; SHA-256, never the
    # client's, never Basic.
    auths = dev.httpd.auths
    assert auths[0] == "" and len(auths) == 4, auths
    assert all(a.startswith('Digest username="cam", realm="cam"') and "algorithm=SHA-256" in a
               for a in auths[1:]), auths
    assert [re.search(r"nc=(\w+)", a).group(1) for a in auths[1:]] == ["00000001", "00000002",
                                                                        "00000003"]
    assert "mallory" not in str(dev.seen)
    # A stale nonce: answered once more, the client sees nothing of it.
    dev.httpd.nonce_uses = 1
    dev.httpd.auths.clear()
    r = curl("-w", "[%{http_code}]", f"{url}/digest/echo", f"{url}/digest/echo?b")
    assert r.stdout.decode().count("[200]") == 2, r.stdout
    # "", then N1 nc=1 (200), N1 nc=2 (stale), N2 nc=1 (200).
    assert len(dev.httpd.auths) == 4 and dev.httpd.auths[0] == "", dev.httpd.auths
    st = g.map_stats("cam")
    assert st["http device logins answered"] == 3, st
    # Pipelined requests while nonces go stale: each goes alone, each answer is its own.
    dev.httpd.nonce_uses = 2
    out = raw(p[0], b"".join(b"GET /digest/echo?%d HTTP/1.1\r\nHost: a\r\n\r\n" % i
                             for i in range(1, 6))
              + b"GET /digest/echo?6 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert [int(x) for x in re.findall(rb"GET /digest/echo\?(\d) ", out)] == [1, 2, 3, 4, 5, 6], out
    assert out.count(b"HTTP/1.0 200 ") + out.count(b"HTTP/1.1 200 ") == 6, out
    # A wrong password: 502 from the gateway, logged, the device's 401 not passed on.
    r = curl("-w", "[%{http_code}]", f"http://127.0.0.1:{p[1]}/digest/echo")
    assert r.stdout.decode().startswith("502 Bad Gateway: the device refused device-auth's login")
    g.wait_log("answered 502: the device refused device-auth's login")
    assert "nope" not in g.log()
    # Pages that need no login pass as before.
    assert curl(f"{url}/echo").stdout.startswith(b"GET /echo ")


def test_device_auth_basic_with_nginx(gateway, tmp_path):
    """nginx with Basic auth as the device: the client gets its pages with no password."""
    from test_proxy import Servers
    servers = Servers(tmp_path)
    nport, gport = free_ports(2)
    pw = subprocess.run(["openssl", "passwd", "-apr1", "s3cret"], capture_output=True,
                        text=True).stdout.strip()
    (tmp_path / "htpasswd").write_text(f"admin:{pw}\n")
    try:
        www = tmp_path / "www"
        www.mkdir()
        (www / "a").write_text("hello\n")
        (www / "b").write_text("hello\n")
        servers.nginx(f"    server {{\n        listen 127.0.0.1:{nport};\n"
                      f"        auth_basic \"cam\";\n"
                      f"        auth_basic_user_file {tmp_path}/htpasswd;\n"
                      f"        add_header X-User $remote_user always;\n"
                      f"        location / {{ root {www}; }}\n    }}\n", [nport])
        secret = tmp_path / "cam.auth"
        secret.write_text("admin:s3cret\n")
        secret.chmod(0o600)
        gateway(config=http_map("cam", gport, nport, extra=f"device-auth = file:{secret}\n"))
        r = curl("-D", "-", "-w", "[%{http_code}]", f"http://127.0.0.1:{gport}/a",
                 f"http://127.0.0.1:{gport}/b")
        out = r.stdout.decode()
        assert out.count("hello\n[200]") == 2 and out.count("X-User: admin\r\n") == 2, out
        assert "401" not in out and "WWW-Authenticate" not in out, out
        # Without device-auth, nginx asks the client (the check that the test can fail).
        r = curl("-w", "[%{http_code}]", "-o", "/dev/null", f"http://127.0.0.1:{nport}/a")
        assert r.stdout == b"[401]"
    finally:
        servers.stop()


def totp(secret, at=None):
    """The RFC 6238 code of a base32 secret now (SHA-1, 6 digits, 30 s)."""
    import base64
    import hmac
    import struct
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int((at or time.time()) // 30)), "sha1").digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7fffffff) % 1000000)


def _passwd(g, user, password):
    r = subprocess.run([BINARY, "passwd", "-c", str(g.conf), "--password-stdin", user],
                       input=password + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_login_in_front_of_the_device(gateway, device, tmp_path):
    """auth = login: without a session every request gets the gateway's login page (the device
    sees nothing), a login makes a session cookie for this mapping only, the cookie never reaches
    the device, users limits who may use it, a wrong user and a wrong password look the same, five
    failures ban the address, and logout ends the session."""
    dev = device()
    p = free_ports(2)
    conf = (http_map("cam", p[0], dev.port, extra="auth = login\nusers = alice, bob\n")
            + http_map("other", p[1], dev.port, extra="auth = login\n"))
    g = gateway(config=conf)
    for u in ("alice", "carol"):
        _passwd(g, u, f"{u}-password-1")
    url = f"http://127.0.0.1:{p[0]}"
    jar = tmp_path / "jar"
    # Not logged in: a redirect to the login page, which names where to come back.
    r = curl("-D", "-", "-o", "/dev/null", f"{url}/echo?x=1")
    h = headers_of(r.stdout.decode())
    assert r.stdout.startswith(b"HTTP/1.1 303 "), r.stdout
    assert h["location"] == ["/.portgate/login?next=/echo%3Fx%3D1"]
    r = curl("-D", "-", f"{url}/.portgate/login?next=/echo%3Fx%3D1")
    text = r.stdout.decode()
    assert text.startswith("HTTP/1.1 200 ") and 'name="next" value="/echo?x=1"' in text
    assert "Content-Security-Policy: default-src 'none'" in text and "X-Frame-Options: DENY" in text
    assert dev.seen == []
    # Log in; follow to the device; the cookie stays with the gateway.
    r = curl("-c", str(jar), "-b", str(jar), "-L", "-D", "-", "-H", "Cookie: theirs=1",
             "--data-urlencode", "user=alice", "--data-urlencode", "password=alice-password-1",
             "--data-urlencode", "next=/echo?x=1", f"{url}/.portgate/login")
    text = r.stdout.decode()
    assert "303 See Other" in text and "Set-Cookie: portgate_login_cam=" in text, text
    assert "HttpOnly; SameSite=Lax" in text
    assert text.rstrip().endswith("") and "GET /echo?x=1 " in text, text
    assert len(dev.seen) == 1 and "portgate_login" not in str(dev.seen), dev.seen
    r = curl("-b", str(jar), "-H", "Cookie: theirs=1", f"{url}/echo")
    assert b"Cookie: theirs=1" in r.stdout and b"portgate_login" not in r.stdout, r.stdout
    # The session is this mapping's only.
    r = curl("-b", str(jar), "-o", "/dev/null", "-w", "%{http_code}",
             f"http://127.0.0.1:{p[1]}/echo")
    assert r.stdout == b"303"
    # users: carol has a password but may not use cam; she is told no more than a wrong
    # password would tell her.
    r = curl("--data", "user=carol&password=carol-password-1", f"{url}/.portgate/login",
             "-w", "[%{http_code}]")
    assert b"Wrong user, password or code." in r.stdout and r.stdout.endswith(b"[200]"), r.stdout
    g.wait_log("login: map cam: user carol from 127.0.0.1 may not use it (users)")
    # A wrong password and a user that does not exist: the same answer.
    answers = set()
    for form in ("user=alice&password=nope", "user=nobody&password=nope"):
        r = curl("--data", form, f"{url}/.portgate/login", "-w", "[%{http_code}]")
        answers.add(r.stdout)
    assert len(answers) == 1 and b"Wrong user, password or code." in answers.pop()
    g.wait_log("login: map cam: failed login for user alice from 127.0.0.1")
    g.wait_log("login: map cam: failed login for a user name that does not exist from 127.0.0.1")
    # Logout ends the session.
    r = curl("-b", str(jar), f"{url}/.portgate/logout")
    assert b"Logged in as alice" in r.stdout
    r = curl("-b", str(jar), "-c", str(jar), "-X", "POST", "-D", "-", "-o", "/dev/null",
             f"{url}/.portgate/logout")
    assert b"303 " in r.stdout and b"Max-Age=0" in r.stdout
    g.wait_log("login: map cam: user alice logged out from 127.0.0.1")
    r = curl("-b", str(jar), "-o", "/dev/null", "-w", "%{http_code}", f"{url}/echo")
    assert r.stdout == b"303"
    # A second factor: with TOTP set up, the password alone fails the same way; the code from
    # the authenticator logs in, once.
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, as enrolment makes them
    with open(g.users, "a") as f:
        f.write(f"totp alice {secret} 0\n")
    time.sleep(1.1)  # a new modification time: the file is read again
    r = curl("--data", "user=alice&password=alice-password-1", f"{url}/.portgate/login",
             "-w", "[%{http_code}]")
    assert b"Wrong user, password or code." in r.stdout, r.stdout
    code = totp(secret)
    form = f"user=alice&password=alice-password-1&code={code}"
    r = curl("--data", form, "-o", "/dev/null", "-w", "%{http_code}", f"{url}/.portgate/login")
    assert r.stdout == b"303", r.stdout
    r = curl("--data", form, f"{url}/.portgate/login", "-w", "[%{http_code}]")
    assert b"Wrong user, password or code." in r.stdout, r.stdout  # a replay
    g.wait_log("login: map cam: user alice from 127.0.0.1: a wrong second factor")
    # Five failures from one address: banned, even with the right password.
    for _ in range(3):
        curl("--data", "user=bob&password=nope", f"{url}/.portgate/login")
    r = curl("--data", "user=alice&password=alice-password-1", f"{url}/.portgate/login", "-w",
             "[%{http_code}]")
    assert b"Too many failed logins" in r.stdout and r.stdout.endswith(b"[429]"), r.stdout
    g.wait_log("failed logins within 5 minutes")
    assert "alice-password-1" not in g.log() and "nope" not in g.log()
    st = g.map_stats("cam")
    assert st["http logins"] == 2 and st["http failed logins"] >= 8, st
    assert len(dev.seen) == 2
    # A client that has not logged in costs the device not even a connection.
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(8)
    quiet.setblocking(False)
    tail = g.reload(config=conf + http_map("shy", free_ports(), quiet.getsockname()[1],
                                          extra="auth = login\n"))
    assert "configuration applied" in tail, tail
    shy = re.search(r"map shy: listening on http 127\.0\.0\.1:(\d+)", g.log()).group(1)
    for path in ("/", "/.portgate/login?next=/x", "/anything"):
        r = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{shy}{path}")
        assert r.stdout in (b"200", b"303"), (path, r.stdout)
    with pytest.raises(BlockingIOError):
        quiet.accept()
    quiet.close()


def test_client_certificates_on_a_shared_port(gateway, device, tmp_path):
    """Two https mappings share a port, each with its own users among the CA's clients: a
    certificate that one mapping takes never reaches the other's device, whatever the server
    name (none, an unknown one, the other's with a resumed session) and the Host say."""
    from tlshelper import CA
    ca = CA()
    (tmp_path / "ca.pem").write_bytes(ca.pem())
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["a.example.org", "b.example.org"])
    alice = ca.write_client(tmp_path, "alice")
    da, db = device(), device()
    port = free_ports()
    keys = (f"cert = {crt}\nkey = {key}\nauth = client-cert\nclient-ca = {tmp_path}/ca.pem\n")
    g = gateway(config=http_map("a", port, da.port, "https",
                                keys + "host = a.example.org\nusers = alice\n")
                + http_map("b", port, db.port, "https",
                           keys + "host = b.example.org\nusers = bob\n"))
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ctx.load_cert_chain(str(alice[0]), str(alice[1]))
    loose = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    loose.check_hostname = False
    loose.load_cert_chain(str(alice[0]), str(alice[1]))

    def get(c, sni, host, session=None):
        s = c.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                          server_hostname=sni, session=session)
        try:
            s.sendall(f"GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while (d := s.recv(65536)):
                out += d
        except (ConnectionResetError, ssl.SSLError):
            pass
        sess = s.session
        s.close()
        return out, sess
    out, sess = get(ctx, "a.example.org", "a.example.org")
    assert b" 200 " in out.split(b"\r\n")[0], out
    for c, sni, host, session in [(loose, None, "b.example.org", None),
                                  (loose, "zzz.example.org", "b.example.org", None),
                                  (ctx, "b.example.org", "b.example.org", None),
                                  (ctx, "b.example.org", "b.example.org", sess)]:
        out, _ = get(c, sni, host, session)
        assert b" 200 " not in out, (sni, host, out)
    assert db.seen == [] and len(da.seen) == 1
    g.wait_log("map b: tcp refused 127.0.0.1:")
    assert "(a client certificate) is not for this mapping" in g.log()
