"""HTTPS front for Pebble that adds ACME Renewal Information (RFC 9773).

Usage: ari_proxy.py PORT PEBBLE_DIR_URL CERT KEY CAFILE WINDOW_FILE LOG_FILE
The directory is Pebble's plus a renewalInfo URL pointing here; every other
URL in it still points at Pebble. /renewal-info/<id> answers with the window
in WINDOW_FILE ({"start", "end", "retry_after"}) and logs <id> to LOG_FILE.
Binds 127.0.0.1 only."""
import http.server
import json
import ssl
import sys
import urllib.request

PORT, PEBBLE_DIR, CERT, KEY, CAFILE, WINDOW, LOG = sys.argv[1:8]
PORT = int(PORT)
client = ssl.create_default_context(cafile=CAFILE)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/dir":
            with urllib.request.urlopen(PEBBLE_DIR, context=client) as rsp:
                directory = json.load(rsp)
            directory["renewalInfo"] = f"https://127.0.0.1:{PORT}/renewal-info"
            return self.reply(200, directory)
        if self.path.startswith("/renewal-info/"):
            with open(WINDOW) as f:
                window = json.load(f)
            with open(LOG, "a") as f:
                f.write(self.path.rsplit("/", 1)[1] + "\n")
            return self.reply(
                200,
                {"suggestedWindow": {"start": window["start"], "end": window["end"]}},
                [("Retry-After", str(window["retry_after"]))],
            )
        self.reply(404, {"type": "urn:ietf:params:acme:error:malformed"})


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
