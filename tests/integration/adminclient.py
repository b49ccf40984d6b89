"""A small client of portgate's admin API, over its unix socket or its HTTP listener."""
import http.client
import json
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(str(self.unix_path))
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def etag(self):
        return self.headers.get("ETag")

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Admin:
    """Talks to a gateway's admin interface: Admin(socket_path) or Admin(host=..., port=...)."""

    def __init__(self, path=None, host=None, port=None, headers=None):
        self.path, self.host, self.port = path, host, port
        self.headers = dict(headers or {})

    def conn(self, timeout=10):
        if self.path is not None:
            return UnixHTTPConnection(self.path, timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, url, body=None, headers=None, raw=None, timeout=10):
        h = dict(self.headers)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = self.conn(timeout)
        try:
            c.request(method, url, body=data, headers=h)
            r = c.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read().decode(errors="replace"))
        finally:
            c.close()

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, body=None, **kw):
        return self.request("POST", url, body, **kw)

    def put(self, url, body=None, **kw):
        return self.request("PUT", url, body, **kw)

    def patch(self, url, body=None, **kw):
        return self.request("PATCH", url, body, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def mappings(self):
        r = self.get("/api/v1/mappings")
        assert r.status == 200, r
        return {m["name"]: m for m in r.json["mappings"]}
