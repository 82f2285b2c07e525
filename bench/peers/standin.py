"""A local stand-in for the Scalekit endpoints the peers call, for bench/run only.

    python3 standin.py PORT JWKS_FILE

- GET  /keys         the JWKS (the Scalekit SDK's JWKS_ENDPOINT; our server and the TypeScript peer use it too)
- POST /oauth/token  a client-credentials answer: the SDK authenticates itself once, when the client is built
Standard library only, so it runs before any venv exists.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    JWKS = f.read()
TOKEN = json.dumps(
    {"access_token": "standin-sdk-token", "token_type": "Bearer", "expires_in": 86400}
).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/keys":
            self._send(200, JWKS)
        else:
            self._send(404, b'{"error":"not_found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/oauth/token":
            self._send(200, TOKEN)
        else:
            self._send(404, b'{"error":"not_found"}')

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # readiness probes that hang up early are not errors


Server(("127.0.0.1", PORT), Handler).serve_forever()
