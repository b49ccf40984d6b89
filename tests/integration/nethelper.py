"""Small network programs the topology tests start inside namespaces (ip netns exec ...).

  nethelper.py tcp-echo HOST PORT          echo server; prints "ready" once listening
  nethelper.py udp-echo HOST PORT          datagram echo server; prints "ready"
  nethelper.py tcp-client HOST PORT MSG    prints what the echo returned, exit 1 on failure
  nethelper.py udp-client HOST PORT MSG    same over UDP
"""
import socket
import sys
import threading


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
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
