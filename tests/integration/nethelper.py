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
"""
import socket
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
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
