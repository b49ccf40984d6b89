"""A single-threaded epoll echo server that holds thousands of connections cheaply (the scale
test and the benchmark's idle-memory measurement). Usage: echo_server.py PORT [PORT...] on
127.0.0.1; prints "ready" once listening."""
import resource
import selectors
import socket
import sys

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.EpollSelector()
listeners = set()
for port in sys.argv[1:]:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(4096)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    listeners.add(ls)
pending = {}  # connection -> bytes it could not take yet; it is then watched for writing only


def drop(c):
    sel.unregister(c)
    pending.pop(c, None)
    c.close()


def send(c, data):
    """Sends what the socket takes and keeps the rest for when it is writable, reading nothing
    from that connection meanwhile: a flow larger than the socket buffer comes back whole."""
    try:
        n = c.send(data)
    except BlockingIOError:
        n = 0
    except ConnectionError:
        drop(c)
        return
    if n < len(data):
        if c not in pending:
            sel.modify(c, selectors.EVENT_WRITE)
        pending[c] = data[n:]
    elif c in pending:
        del pending[c]
        sel.modify(c, selectors.EVENT_READ)


print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj in listeners:
            ls = key.fileobj
            while True:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    break
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
        elif key.fileobj in pending:
            send(key.fileobj, pending[key.fileobj])
        else:
            c = key.fileobj
            try:
                d = c.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                d = b""
            if d:
                send(c, d)
            else:
                drop(c)
