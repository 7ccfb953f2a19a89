"""What the loopback fronts for moto share (route53_proxy.py,
edge_proxy.py): the upstream connection, one per thread and kept alive;
reading a request body, chunked or not; answering with the right length;
a threaded server on 127.0.0.1."""
import http.client
import http.server
import socketserver
import threading
import urllib.parse

HOP_BY_HOP = ("transfer-encoding", "connection", "content-length")


class Upstream:
    """The server a front passes requests to."""

    def __init__(self, url):
        self.url = urllib.parse.urlparse(url)
        self.local = threading.local()

    def conn(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=120)
            self.local.conn = conn
        return conn

    def call(self, method, path, data=b"", headers=None):
        """(status, headers, payload); a dropped keep-alive is retried once."""
        headers = dict(headers or {})
        if data or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(data))
        for attempt in range(2):
            conn = self.conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def passed_headers(self):
        """The request's headers without the hop-by-hop ones."""
        return {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}

    def send(self, status, headers, data):
        self.send_response(status)
        length = str(len(data))
        for name, value in headers:
            if name.lower() == "content-length" and self.command == "HEAD":
                length = value  # what a GET would return
            elif name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def serve(port, handler):
    """Serves `handler` (a Handler subclass) on 127.0.0.1:port, forever."""
    Server(("127.0.0.1", port), handler).serve_forever()
