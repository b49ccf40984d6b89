"""A device's web server for the HTTP tests: HTTP/1.1 keep-alive (Python's http.server), with
pages that show what it received and answers that name its own address, as weak devices do."""
import base64
import hashlib
import http.server
import os
import re
import socket
import threading

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _digest_ok(self):
        """/digest* pages want Digest (SHA-256 or MD5, qop=auth) for user "cam", password
        "s3cret": True if this request has it, else a 401 is sent. A nonce is good for
        server.nonce_uses requests, then it is stale."""
        srv = self.server
        auth = self.headers.get("Authorization", "")
        srv.auths.append(auth)
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', auth[7:])) if auth.startswith("Digest ") else {}
        algo = fields.get("algorithm", "MD5")
        h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if algo == "SHA-256" else \
            (lambda s: hashlib.md5(s.encode()).hexdigest())
        nonce = fields.get("nonce", "")
        stale = False
        if fields and nonce in srv.nonces:
            ha1 = h(f"cam:{fields.get('realm')}:s3cret")
            ha2 = h(f"{self.command}:{fields.get('uri')}")
            want = h(f"{ha1}:{nonce}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}")
            if fields.get("response") == want and fields.get("uri") == self.path:
                srv.nonces[nonce] += 1
                if srv.nonces[nonce] <= srv.nonce_uses:
                    return True
                stale = True
        new = base64.b64encode(os.urandom(12)).decode()
        srv.nonces[new] = 0
        st = ", stale=true" if stale else ""
        self._send(401, b"login needed\n", [
            ("WWW-Authenticate", f'Digest realm="cam", qop="auth", algorithm=MD5, nonce="{new}"{st}'),
            ("WWW-Authenticate", f'Digest realm="cam", qop="auth", algorithm=SHA-256, nonce="{new}"{st}'),
            ("WWW-Authenticate", 'Basic realm="cam"')])
        return False

    def do_GET(self):
        if self.path.startswith("/digest") and not self._digest_ok():
            return
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        me = f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        if self.path.startswith(("/echo", "/digest/echo")):
            head = f"{self.command} {self.path} {self.request_version}\n" + "".join(
                f"{k}: {v}\n" for k, v in self.headers.items())
            self._send(200, head.encode(), [("Content-Type", "text/plain")])
        elif self.path == "/redirect":
            self._send(302, b"", [("Location", f"http://{me}/login?x=1"),
                                  ("Content-Location", f"http://{me}/redirect"),
                                  ("Refresh", f"3; url=http://{me}/later"),
                                  ("Set-Cookie", f"sid=abc; Domain={self.server.server_address[0]}; Path=/; HttpOnly"),
                                  ("Set-Cookie", "other=1; Domain=example.org")])
        elif self.path == "/elsewhere":
            self._send(302, b"", [("Location", "http://192.0.2.99/x")])
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif self.path.startswith("/big"):
            self._send(200, self.server.big, [("Content-Type", "application/octet-stream")])
        elif self.path == "/ws":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            # Past the upgrade: raw bytes echoed, as a websocket echo server would frames.
            conn = self.connection
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                conn.sendall(d)
            self.close_connection = True
        else:
            self._send(404, b"no such page\n")

    do_HEAD = do_GET
    do_DELETE = do_GET

    def do_POST(self):
        data = self._body()
        if self.path.startswith("/digest") and not self._digest_ok():
            return
        self.server.seen.append((self.command, self.path, dict(self.headers)))
        self._send(200, hashlib.sha256(data).hexdigest().encode())

    do_PUT = do_POST


class Device:
    def __init__(self, host="127.0.0.1", big=b""):
        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []
        self.httpd.auths = []  # the Authorization of each request for /digest, "" for none
        self.httpd.nonces = {}
        self.httpd.nonce_uses = 1000
        self.httpd.big = big
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self):
        return self.httpd.seen

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def raw(port, data, host="127.0.0.1", timeout=5, read=True):
    """Sends data on a new connection, then reads until the gateway closes (or timeout)."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
    s.close()
    return out
