"""The PROXY protocol (send-proxy, accept-proxy, trusted-proxies) through the real binary, with
HAProxy and nginx at the other end: targets that read the header portgate sends, and a load
balancer in front that sends the one portgate reads. Clients connect from other loopback
addresses (127.0.0.2, ...), so that the address a header carries is told from portgate's own."""
import ipaddress
import os
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from adminclient import Admin
from conftest import (BINARY, BULK, assert_spliced, connect, free_ports, recv_all,
                      recv_exactly, roundtrip)
from httpdevice import Device
from tlshelper import CA, client_context

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def wait_listening(port, timeout=10):
    """Waits until a TCP socket listens on 127.0.0.1:port (read from /proc/net/tcp: a probe
    connection would reach what the server forwards to)."""
    want = f"0100007F:{port:04X}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class Servers:
    """HAProxy and nginx processes, each with its own config in the test's directory, in the
    foreground (non-daemon), stopped at the end of the test."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []

    def _start(self, argv, name, ports):
        log = open(self.tmp_path / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=log)
        self.procs.append((p, log))
        for port in ports:
            wait_listening(port)
        return p

    def haproxy(self, body, ports):
        if HAPROXY is None:
            pytest.skip("haproxy is not installed")
        cfg = self.tmp_path / f"haproxy-{len(self.procs)}.cfg"
        cfg.write_text("global\n    maxconn 200\n"
                       "defaults\n    timeout connect 5s\n    timeout client 30s\n"
                       "    timeout server 30s\n" + body)
        return self._start([HAPROXY, "-db", "-f", str(cfg)], cfg.stem, ports)

    def nginx(self, body, ports):
        if NGINX is None:
            pytest.skip("nginx is not installed")
        d = self.tmp_path / f"nginx-{len(self.procs)}"
        d.mkdir()
        temps = "".join(f"    {k}_temp_path {d}/{k};\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (d / "nginx.conf").write_text(
            f"daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    access_log off;\n{temps}{body}}}\n")
        return self._start([NGINX, "-p", str(d), "-c", str(d / "nginx.conf")], d.name, ports)

    def stop(self):
        for p, log in self.procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def ca():
    return CA()


def tcp_map(name, port, target, proto="tcp", extra=""):
    return (f"[map {name}]\nproto = {proto}\nlisten = 127.0.0.1:{port}\n"
            f"target = 127.0.0.1:{target}\n" + extra)


def http_get(s, path="/"):
    """Sends a GET on s (a socket, plain or TLS) and returns the answer's body."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    answer = recv_all(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer
    return body.decode()


def read_header(c):
    """Reads a PROXY header (v1 or v2) from socket c; returns (version, src, dst) with the
    addresses as "IP:PORT" (IPv6 in brackets), or None for those of LOCAL or UNKNOWN."""
    first = recv_exactly(c, 16)
    if first.startswith(V2_SIG):
        block = recv_exactly(c, struct.unpack("!H", first[14:16])[0])
        if first[13] == 0x11:
            a, b, sp, dp = struct.unpack("!4s4sHH", block[:12])
            return 2, f"{ipaddress.ip_address(a)}:{sp}", f"{ipaddress.ip_address(b)}:{dp}"
        if first[13] == 0x21:
            a, b, sp, dp = struct.unpack("!16s16sHH", block[:36])
            return 2, f"[{ipaddress.ip_address(a)}]:{sp}", f"[{ipaddress.ip_address(b)}]:{dp}"
        return 2, None, None
    line = first
    while not line.endswith(b"\r\n"):
        line += recv_exactly(c, 1)
    f = line.decode().split()
    assert f[0] == "PROXY", line
    if f[1] == "UNKNOWN":
        return 1, None, None
    v6 = f[1] == "TCP6"
    ep = (lambda ip, port: f"[{ip}]:{port}") if v6 else (lambda ip, port: f"{ip}:{port}")
    return 1, ep(f[2], f[4]), ep(f[3], f[5])


def header_then_echo(seen):
    """A target that reads the PROXY header, keeps it in seen, says "SRC DST\\n", then echoes."""
    def handler(c):
        v, src, dst = read_header(c)
        seen.append((v, src, dst))
        c.sendall(f"{src} {dst}\n".encode())
        while True:
            d = c.recv(262144)
            if not d:
                return
            c.sendall(d)
    return handler


def closed(s):
    """True once the gateway has closed s (a FIN or a reset), reading what comes before."""
    try:
        return recv_all(s) == b""
    except ConnectionResetError:
        return True


def send(s, data):
    """Sends data, which the gateway may already have refused by closing."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_line(s):
    line = b""
    while not line.endswith(b"\n"):
        d = s.recv(1)
        assert d, line
        line += d
    return line.decode().strip()


# ---------------------------------------------------------------- send-proxy

# HAProxy's `accept-proxy` and nginx's `proxy_protocol` both take v1 and v2; each answers with
# the client address and the address it connected to, as the header gave them.
HAPROXY_TARGET = """frontend f
    mode http
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src]:%[src_port] %[dst]:%[dst_port]"
"""
NGINX_TARGET = """    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{ return 200 "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port"; }}
    }}
"""


@pytest.mark.parametrize("variant", ["splice-2w", "copy-1w"], indirect=True)
def test_send_proxy_to_haproxy_and_nginx(gateway, servers, tmp_path, ca, variant):
    """tcp, tls and https mappings send each version of the header to HAProxy and nginx, which
    see the client's address and the gateway's address the client used: for TLS mappings too,
    the TCP connection's."""
    hp, np_ = free_ports(2)
    servers.haproxy(HAPROXY_TARGET.format(port=hp), [hp])
    servers.nginx(NGINX_TARGET.format(port=np_), [np_])
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    cases = []  # (name, proto, port)
    config = ""
    ports = free_ports(12)
    for i, (proto, version, target) in enumerate(
            (p, v, t) for p in ("tcp", "tls", "https") for v in ("v1", "v2")
            for t in (hp, np_)):
        name = f"{proto}-{version}-{'haproxy' if target == hp else 'nginx'}"
        extra = f"send-proxy = {version}\n"
        if proto != "tcp":
            extra += f"cert = {crt}\nkey = {key}\n"
        config += tcp_map(name, ports[i], target, proto, extra)
        cases.append((name, proto, ports[i]))
    gateway(config=config)
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.pem())
    ctx = client_context(cafile)
    for name, proto, port in cases:
        s = connect(port, source="127.0.0.2")
        client = s.getsockname()
        if proto != "tcp":
            s = ctx.wrap_socket(s, server_hostname="localhost")
        body = http_get(s)
        s.close()
        assert body == f"127.0.0.2:{client[1]} 127.0.0.1:{port}", (name, body)


@pytest.mark.parametrize("variant", ["splice-1w", "splice-2w", "copy-1w", "copy-2w"],
                         indirect=True)
def test_send_proxy_then_bulk(gateway, tcp_echo, variant):
    """The header goes first, then the client's bytes, whole, on both relay paths (a bulk
    flow spliced on the splice path), over IPv6 too."""
    seen = []
    srv = tcp_echo(handler=header_then_echo(seen))
    p = free_ports(2)
    p6 = free_ports(family=socket.AF_INET6, host="::1")
    g = gateway(config=tcp_map("v1", p[0], srv.port, extra="send-proxy = v1\n")
                + tcp_map("v2", p[1], srv.port, extra="send-proxy = v2\n")
                + f"[map six]\nproto = tcp\nlisten = [::1]:{p6}\ntarget = 127.0.0.1:{srv.port}\n"
                  "send-proxy = v2\n")
    data = os.urandom(BULK)
    for name, port in (("v1", p[0]), ("v2", p[1])):
        s = connect(port, source="127.0.0.3")
        me = s.getsockname()
        assert read_line(s) == f"127.0.0.3:{me[1]} 127.0.0.1:{port}"
        # Sent while the echo is read (roundtrip): a sender that read nothing until it had sent
        # it all could fill the buffers on the way and stall the flow, which then goes on in
        # pieces too small to splice.
        assert roundtrip(s, data, shut=True) == data
        s.close()
        assert_spliced(g, name, variant, more_than=BULK)
    assert [v for v, _, _ in seen] == [1, 2]
    s = connect(p6, host="::1", family=socket.AF_INET6)
    me = s.getsockname()
    assert read_line(s) == f"[::1]:{me[1]} [::1]:{p6}"
    s.close()


# ---------------------------------------------------------------- accept-proxy

HAPROXY_FRONT = """frontend v1
    mode tcp
    bind 127.0.0.1:{f1}
    default_backend b1
backend b1
    mode tcp
    server s 127.0.0.1:{g1} send-proxy
frontend v2
    mode tcp
    bind 127.0.0.1:{f2}
    default_backend b2
backend b2
    mode tcp
    server s 127.0.0.1:{g2} send-proxy-v2
"""


@pytest.mark.parametrize("variant", ["splice-2w", "copy-1w"], indirect=True)
def test_accept_proxy_behind_haproxy(gateway, servers, tcp_echo, variant):
    """HAProxy in front: an http mapping gives the device the client its v1 header names in
    X-Forwarded-For; a tcp mapping takes v2 and passes the client on in its own v1 header, lists
    it in the admin API and its log, and applies deny and max-conns-per-ip to it, not to the
    proxy."""
    dev = Device()
    seen = []
    srv = tcp_echo(handler=header_then_echo(seen))
    f1, f2, g1, g2 = free_ports(4)
    g = gateway(config=tcp_map("web", g1, dev.port, "http",
                               "accept-proxy = any\ntrusted-proxies = 127.0.0.1\n")
                + tcp_map("chain", g2, srv.port,
                          extra="accept-proxy = v2\ntrusted-proxies = 127.0.0.1/32\n"
                                "send-proxy = v1\ndeny = 127.0.0.4\nmax-conns-per-ip = 1\n"))
    api = Admin(g.admin_socket)
    m = api.mappings()
    assert (m["chain"]["send-proxy"], m["chain"]["accept-proxy"],
            m["chain"]["trusted-proxies"]) == ("v1", "v2", "127.0.0.1/32")
    assert (m["web"]["send-proxy"], m["web"]["accept-proxy"]) == ("off", "any")
    servers.haproxy(HAPROXY_FRONT.format(f1=f1, f2=f2, g1=g1, g2=g2), [f1, f2])
    try:
        # http: X-Forwarded-For is the client the header named, not HAProxy.
        s = connect(f1, source="127.0.0.2")
        body = http_get(s, "/echo")
        s.close()
        assert "\nX-Forwarded-For: 127.0.0.2\n" in body, body

        # tcp: the client is the one of the v2 header, in the target's v1 header, the API's
        # list and the log; the header's destination is HAProxy's frontend.
        a = connect(f2, source="127.0.0.3")
        me = a.getsockname()
        assert read_line(a) == f"127.0.0.3:{me[1]} 127.0.0.1:{f2}"
        r = api.get("/api/v1/connections?mapping=chain")
        assert [c["client"] for c in r.json["connections"]] == [f"127.0.0.3:{me[1]}"], r
        data = os.urandom(BULK)
        assert roundtrip(a, data) == data  # read while sent, as above
        # max-conns-per-ip counts 127.0.0.3, not HAProxy (all of whose connections come from
        # 127.0.0.1): a second from 127.0.0.3 is refused, one from 127.0.0.5 goes through.
        b = connect(f2, source="127.0.0.3")
        assert closed(b)
        b.close()
        g.wait_log("map chain: tcp refused 127.0.0.3:")
        assert "max-conns-per-ip reached" in g.log()
        c = connect(f2, source="127.0.0.5")
        assert read_line(c).startswith("127.0.0.5:")
        c.close()
        # deny applies to the client too.
        d = connect(f2, source="127.0.0.4")
        assert closed(d)
        d.close()
        g.wait_log("map chain: tcp refused 127.0.0.4:")
        assert re.search(r"tcp refused 127\.0\.0\.4:\d+: not allowed by allow/deny", g.log())
        a.shutdown(socket.SHUT_WR)
        assert recv_all(a) == b""
        a.close()
        g.wait_log(f"map chain: tcp 127.0.0.3:{me[1]} -> 127.0.0.1:{srv.port} ended after")
        # After the header (copied), the flow went by splice: most of it. Not all of both ways:
        # a splice that brings little, as a loaded machine makes them, goes back to copying.
        assert_spliced(g, "chain", variant, more_than=BULK // 2)
        st = g.map_stats("chain")
        assert st["refused by allow/deny"] == 1 and st["accepted"] == 2, st
        # A refused client ends with no line of its own beyond the refusal.
        assert "127.0.0.4" not in "".join(l for l in g.log().splitlines() if "ended after" in l)
    finally:
        dev.close()


def test_accept_proxy_before_tls(gateway, tcp_echo, tmp_path, ca):
    """The header is read before the TLS handshake, and nothing after it: a v1 header sent in two
    pieces, then a ClientHello on the same connection. The target gets the client the header
    named (IPv6 documentation addresses) in a v2 header."""
    seen = []
    srv = tcp_echo(handler=header_then_echo(seen))
    crt, key, _ = ca.write_leaf(tmp_path, "gw", ["localhost"])
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.pem())
    port = free_ports()
    g = gateway(config=tcp_map("tls", port, srv.port, "tls",
                               f"cert = {crt}\nkey = {key}\naccept-proxy = v1\n"
                               "trusted-proxies = 127.0.0.1\nsend-proxy = v2\n"))
    raw = connect(port)
    raw.sendall(b"PROXY TCP6 2001:db8::7 2001:d")
    time.sleep(0.3)
    raw.sendall(b"b8::1 51234 443\r\n")
    s = client_context(cafile).wrap_socket(raw, server_hostname="localhost")
    assert read_line(s) == "[2001:db8::7]:51234 [2001:db8::1]:443"
    s.sendall(b"through TLS")
    assert recv_exactly(s, 11) == b"through TLS"
    s.close()
    assert seen == [(2, "[2001:db8::7]:51234", "[2001:db8::1]:443")]
    g.wait_log("map tls: tcp [2001:db8::7]:51234 -> ")


def test_accept_proxy_refusals(gateway, tcp_echo):
    """An untrusted peer is refused at accept (logged and counted with allow/deny's); a trusted
    one is closed, with the reason logged, when it sends junk, the other version, a bad line,
    ends early, or never finishes its header within connect-timeout. The target never hears of
    any of them."""
    srv = tcp_echo()
    p = free_ports(2)
    g = gateway(config=tcp_map("pp", p[0], srv.port,
                               extra="accept-proxy = v1\ntrusted-proxies = 127.0.0.1\n"
                                     "connect-timeout = 1s\n")
                + tcp_map("open", p[1], srv.port,
                          extra="accept-proxy = any\ntrusted-proxies = 127.0.0.0/8\n"))

    try:  # the reset may come before connect() returns
        s = connect(p[0], source="127.0.0.5")
        send(s, b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n")
        assert closed(s)
    except ConnectionResetError:
        pass
    g.wait_log("map pp: tcp refused 127.0.0.5:")
    assert re.search(r"tcp refused 127\.0\.0\.5:\d+: accept-proxy: not one of trusted-proxies",
                     g.log())
    cases = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "PROXY header: not a PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not a PROXY protocol header"),
        (V2_SIG + b"\x21\x11\x00\x0c" + bytes(12), "PROXY header: a v2 header where v1 is expected"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", "PROXY header: v1: a port that is not"),
        (b"PROXY TCP4 192.0.2.1 2001:db8::1 1 2\r\n",
         "PROXY header: v1: TCP4 with an address that is not IPv4"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", "PROXY header: v1: a LF without CR"),
    ]
    for data, why in cases:
        s = connect(p[0])
        send(s, data)
        assert closed(s), data
        g.wait_log(why)
    # Cut, then the end of the stream.
    s = connect(p[0])
    s.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.")
    s.shutdown(socket.SHUT_WR)
    assert closed(s)
    g.wait_log("PROXY header: the client's proxy ended before a whole one")
    # Cut, and never finished: closed after connect-timeout.
    s = connect(p[0])
    s.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.")
    start = time.time()
    assert closed(s)
    assert 0.8 < time.time() - start < 5
    g.wait_log("PROXY header: not whole within 1000ms (connect-timeout)")
    # Nothing at all: the same.
    s = connect(p[0])
    assert closed(s)
    g.wait_log("PROXY header: not whole within 1000ms (connect-timeout)", 2)
    assert srv.accepted == 0
    st = g.map_stats("pp")
    assert st["refused by allow/deny"] == 1 and st["accepted"] == 0, st
    # v2 LOCAL (a health check) and v1 UNKNOWN: the proxy's own address stands.
    for hdr in (V2_SIG + b"\x20\x00\x00\x00", b"PROXY UNKNOWN\r\n"):
        s = connect(p[1], source="127.0.0.6")
        me = s.getsockname()
        s.sendall(hdr + b"ping")
        assert recv_exactly(s, 4) == b"ping"
        s.close()
        g.wait_log(f"map open: tcp 127.0.0.6:{me[1]} -> ")


def test_check_proxy_keys(tmp_path):
    """check refuses send-proxy and accept-proxy on udp, accept-proxy without trusted-proxies and
    bad values, and shows them when good."""
    conf = tmp_path / "c.conf"
    udp = "[map u]\nproto = udp\nlisten = 0.0.0.0:5000\ntarget = 192.0.2.10:5000\n"
    tcp = "[map t]\nproto = tcp\nlisten = 0.0.0.0:8080\ntarget = 192.0.2.10:80\n"
    cases = [
        (udp + "send-proxy = v1\n", "[map u] send-proxy applies to tcp mappings only"),
        (udp + "accept-proxy = v2\ntrusted-proxies = 192.0.2.1\n",
         "[map u] accept-proxy applies to tcp mappings only"),
        (udp + "trusted-proxies = 192.0.2.1\n", "[map u] trusted-proxies applies to tcp mappings"),
        (tcp + "accept-proxy = v1\n", "[map t] accept-proxy: set trusted-proxies"),
        (tcp + "send-proxy = v3\n", "send-proxy: \"v3\": expected v1, v2 or off"),
        (tcp + "accept-proxy = yes\ntrusted-proxies = 192.0.2.1\n",
         "accept-proxy: \"yes\": expected v1, v2, any or off"),
    ]
    for text, want in cases:
        conf.write_text("[gateway]\nadmin = off\nadmin-socket = off\n" + text)
        out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
        assert out.returncode == 1 and want in out.stderr, (text, out.stderr)
    conf.write_text("[gateway]\nadmin = off\nadmin-socket = off\n" + tcp
                    + "send-proxy = v2\naccept-proxy = any\ntrusted-proxies = 192.0.2.0/24,"
                      " 2001:db8::1\n")
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert ("connect-timeout=10s send-proxy=v2 accept-proxy=any "
            "trusted-proxies=192.0.2.0/24,2001:db8::1/128 idle-timeout=1h") in out.stdout
    # And in a --map SPEC.
    out = subprocess.run([BINARY, "check", "--map",
                          "tcp:0.0.0.0:8080=192.0.2.10:80,send-proxy=v1,accept-proxy=v1,"
                          "trusted-proxies=192.0.2.1,192.0.2.2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "trusted-proxies=192.0.2.1/32,192.0.2.2/32" in out.stdout


def test_accept_proxy_on_a_shared_port(gateway, tmp_path):
    """Mappings that share a port by host take the PROXY header first, then the Host chooses the
    device, and the chosen mapping's allow and deny judge the client the header named."""
    d1, d2 = Device(), Device()
    port = free_ports()
    keys = "accept-proxy = v1\ntrusted-proxies = 127.0.0.1\n"
    try:
        gateway(config=tcp_map("cam1", port, d1.port, "http",
                               keys + "host = cam1.example.org\ndeny = 198.51.100.7\n")
                + tcp_map("cam2", port, d2.port, "http", keys + "host = cam2.example.org\n"))

        def get(host, src):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(f"PROXY TCP4 {src} 203.0.113.1 5555 80\r\n"
                      f"GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            out = b""
            try:
                while (d := s.recv(65536)):
                    out += d
            except ConnectionResetError:
                pass
            s.close()
            return out
        out = get("cam2.example.org", "198.51.100.7")
        assert b" 200 " in out.split(b"\r\n")[0] and b"\nX-Forwarded-For: 198.51.100.7\n" in out
        assert get("cam1.example.org", "198.51.100.7") == b""  # cam1 denies that client
        out = get("cam1.example.org", "198.51.100.8")
        assert b"\nX-Forwarded-For: 198.51.100.8\n" in out
        assert len(d1.seen) == 1 and len(d2.seen) == 1
    finally:
        d1.close()
        d2.close()
    # Sharing a port needs the same accept-proxy (the header comes before the Host).
    conf = tmp_path / "c.conf"
    conf.write_text("[gateway]\nadmin = off\nadmin-socket = off\n"
                    + tcp_map("a", 8080, 80, "http", keys + "host = a.example.org\n")
                    + tcp_map("b", 8080, 81, "http", "host = b.example.org\n"))
    out = subprocess.run([BINARY, "check", "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 1 and "must have the same accept-proxy" in out.stderr, out.stderr
