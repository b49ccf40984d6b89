"""Small network programs the topology tests start inside namespaces (ip netns exec ...).

  nethelper.py tcp-echo HOST PORT          echo server; prints "ready" once listening
  nethelper.py udp-echo HOST PORT          datagram echo server; prints "ready"
  nethelper.py tcp-client HOST PORT MSG    prints what the echo returned, exit 1 on failure
  nethelper.py udp-client HOST PORT MSG    same over UDP
  nethelper.py udp-burst HOST PORT SIZE N  sends N datagrams of SIZE bytes at once; prints how
                                           many of that size came back within 5 s
  nethelper.py wait-tcp HOST PORT          waits until something listens there (exit 1 after 20 s)
  nethelper.py gst-rtsp HOST PORT [USER PASSWORD]
                                           GStreamer's RTSP server with a live H.264 test
                                           pattern at /test (Digest authentication when a user
                                           is given); prints "ready"
  nethelper.py dns HOST PORT NAME=IPV4...  a DNS server over UDP with the A records given (other
                                           types of those names: no answer; other names:
                                           NXDOMAIN); prints "ready"
  nethelper.py http-device HOST PORT       the HTTP tests' device (httpdevice.py); "ready"
  nethelper.py https-get HOST PORT NAME CAFILE
                                           GET /echo over TLS to NAME (SNI, verified against
                                           CAFILE); prints "STATUS SERIAL" (the certificate's
                                           serial number, in hex), exit 1 on failure
  nethelper.py https-hold HOST PORT NAME CAFILE
                                           the same on one connection, kept open: prints
                                           "ready" after a first GET, then "STATUS SERIAL" for
                                           each line read from stdin, a GET on that connection
"""
import http.client
import os
import socket
import ssl
import struct
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def tcp_echo(host, port):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    print("ready", flush=True)

    def serve(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)

    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def udp_echo(host, port):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        d, a = s.recvfrom(65536)
        s.sendto(d, a)


def tcp_client(host, port, msg):
    s = socket.create_connection((host, port), timeout=3)
    s.sendall(msg.encode())
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    print(out.decode())


def udp_client(host, port, msg):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(msg.encode(), (host, port))
    d, _ = s.recvfrom(65536)
    print(d.decode())


def udp_burst(host, port, size, count):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.settimeout(5)
    for i in range(count):
        s.sendto(bytes([i % 256]) * size, (host, port))
    got = 0
    try:
        while got < count:
            d, _ = s.recvfrom(65536)
            got += len(d) == size
    except socket.timeout:
        pass
    print(got)


def wait_tcp(host, port):
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket(family(host), socket.SOCK_STREAM) as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise OSError(f"nothing listens on {host}:{port}")


def gst_rtsp(host, port, user=None, password=None):
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(host)
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( videotestsrc is-live=true ! video/x-raw,width=320,height=240,"
                       "framerate=25/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
                       "key-int-max=25 ! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(True)
    if user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_digest(user, password, token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        for perm in (GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS,
                     GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT):
            perms.add_permission_for_role("user", perm, True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


def dns(host, port, records):
    """Enough of RFC 1035 for one resolver: a question per query, answers authoritative (a
    stub resolver takes an empty answer from a server that is neither authoritative nor
    recursive for a lame referral)."""
    names = {}
    for r in records:
        name, addr = r.split("=", 1)
        names[name.lower().rstrip(".")] = socket.inet_aton(addr)
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(4096)
        if len(q) < 12:
            continue
        qid, flags, qdcount = struct.unpack("!HHH", q[:6])
        if flags & 0x8000 or qdcount != 1:
            continue
        i, labels = 12, []
        while i < len(q) and q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        if i + 5 > len(q):
            continue
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        rcode, answer = (0, b"") if name in names else (3, b"")
        if name in names and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + names[name]
        # QR, AA, RD as asked, RA, and the rcode.
        reply_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        s.sendto(struct.pack("!HHHHHH", qid, reply_flags, 1, 1 if answer else 0, 0, 0)
                 + question + answer, peer)


def http_device(host, port):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from httpdevice import Handler
    import http.server
    httpd = http.server.ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    httpd.big = b""
    print("ready", flush=True)
    httpd.serve_forever()


def https_connection(host, port, name, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    # The certificate must be NAME's, whatever address carries it.
    conn.sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=10),
                                server_hostname=name)
    return conn


def https_get_on(conn):
    conn.request("GET", "/echo")
    r = conn.getresponse()
    r.read()
    return f"{r.status} {conn.sock.getpeercert()['serialNumber']}"


def https_get(host, port, name, cafile):
    conn = https_connection(host, port, name, cafile)
    print(https_get_on(conn), flush=True)
    conn.close()


def https_hold(host, port, name, cafile):
    conn = https_connection(host, port, name, cafile)
    https_get_on(conn)
    print("ready", flush=True)
    for _ in sys.stdin:
        print(https_get_on(conn), flush=True)


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        if mode == "tcp-echo":
            tcp_echo(host, port)
        elif mode == "udp-echo":
            udp_echo(host, port)
        elif mode == "tcp-client":
            tcp_client(host, port, sys.argv[4])
        elif mode == "udp-client":
            udp_client(host, port, sys.argv[4])
        elif mode == "udp-burst":
            udp_burst(host, port, int(sys.argv[4]), int(sys.argv[5]))
        elif mode == "wait-tcp":
            wait_tcp(host, port)
        elif mode == "gst-rtsp":
            gst_rtsp(host, port, *sys.argv[4:6])
        elif mode == "dns":
            dns(host, port, sys.argv[4:])
        elif mode == "http-device":
            http_device(host, port)
        elif mode == "https-get":
            https_get(host, port, sys.argv[4], sys.argv[5])
        elif mode == "https-hold":
            https_hold(host, port, sys.argv[4], sys.argv[5])
    except (OSError, http.client.HTTPException) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
