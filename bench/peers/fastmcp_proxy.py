"""The Python peer of the gateway rows: FastMCP's proxy (`create_proxy`) in front of an upstream MCP
server, with FastMCP's own bearer-token auth (`JWTVerifier`, issuer + audience, against the
stand-in's JWKS) — the job `serve --stateless --upstream` does (issue 18 compares the two).
Stateless HTTP with JSON answers, like row (gs); uvicorn with one worker, at warning level.

    PORT=... UPSTREAM=http://127.0.0.1:P/ JWKS_URL=... ISSUER=... AUDIENCE=... python fastmcp_proxy.py
"""

import os

from fastmcp.server import create_proxy
from starlette.requests import Request
from starlette.responses import JSONResponse
from fastmcp.server.auth.providers.jwt import JWTVerifier

PORT = int(os.environ["PORT"])

auth = JWTVerifier(
    jwks_uri=os.environ["JWKS_URL"],
    issuer=os.environ["ISSUER"],
    audience=os.environ["AUDIENCE"],
    base_url=f"http://127.0.0.1:{PORT}",
)
proxy = create_proxy(os.environ["UPSTREAM"], name="fastmcp-proxy", auth=auth)


@proxy.custom_route("/health", methods=["GET"])
async def health(request: Request) -> JSONResponse:
    """Readiness for the harness (FastMCP serves no unauthenticated GET of its own here)."""
    return JSONResponse({"status": "healthy"})

if __name__ == "__main__":
    proxy.run(transport="http", host="127.0.0.1", port=PORT, path="/", log_level="warning",
              show_banner=False, stateless_http=True, json_response=True)
