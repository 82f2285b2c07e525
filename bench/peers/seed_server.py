"""The seed pattern (../../../shared/seed/fastapi-fastmcp-scalekit-pattern.md), as a benchmark peer.

FastAPI HTTP middleware validating every non-public request with the Scalekit SDK's
`validate_access_token` (issuer + audience), FastMCP's HTTP app mounted at `/`, uvicorn with one
worker: the pattern as shipped. The Scalekit endpoints it calls (`POST /oauth/token` once at
start-up, `GET /keys` on first use) are answered by `standin.py` on SK_ENV_URL.

    SK_ENV_URL=http://127.0.0.1:P SK_CLIENT_ID=x SK_CLIENT_SECRET=y EXPECTED_AUDIENCE=... PORT=... \
        [SEED_STATELESS=1] python seed_server.py
"""

import json
import os

import uvicorn
from fastapi import FastAPI, Request, Response
from fastmcp import Context, FastMCP
from scalekit import ScalekitClient
from scalekit.common.scalekit import TokenValidationOptions

SK_ENV_URL = os.environ["SK_ENV_URL"]
EXPECTED_AUDIENCE = os.environ["EXPECTED_AUDIENCE"]
PORT = int(os.environ.get("PORT", "3002"))
STATELESS = os.environ.get("SEED_STATELESS") == "1"
RESOURCE_METADATA_URL = f"http://localhost:{PORT}/.well-known/oauth-protected-resource"
PROTECTED_RESOURCE_METADATA = os.environ.get(
    "PROTECTED_RESOURCE_METADATA",
    json.dumps({"resource": EXPECTED_AUDIENCE, "authorization_servers": [SK_ENV_URL]}),
)
WWW_HEADER = {
    "WWW-Authenticate": f'Bearer realm="OAuth", resource_metadata="{RESOURCE_METADATA_URL}"'
}

scalekit_client = ScalekitClient(
    SK_ENV_URL, os.environ["SK_CLIENT_ID"], os.environ["SK_CLIENT_SECRET"]
)

mcp = FastMCP("scalekit-seed")


@mcp.tool(name="greet_user", description="Greets the user with a personalized message.")
async def greet_user(name: str, ctx: Context | None = None) -> dict:
    return {"content": [{"type": "text", "text": f"Hi {name}, welcome to Scalekit!"}]}


mcp_app = mcp.http_app(path="/", stateless_http=STATELESS, json_response=STATELESS)
app = FastAPI(lifespan=mcp_app.lifespan)


@app.middleware("http")
async def auth_middleware(request: Request, call_next):
    if request.url.path in {"/health", "/.well-known/oauth-protected-resource"}:
        return await call_next(request)
    auth_header = request.headers.get("authorization")
    if not auth_header or not auth_header.startswith("Bearer "):
        return Response(
            '{"error": "Missing Bearer token"}',
            status_code=401,
            headers=WWW_HEADER,
            media_type="application/json",
        )
    token = auth_header.split("Bearer ", 1)[1].strip()
    options = TokenValidationOptions(issuer=SK_ENV_URL, audience=[EXPECTED_AUDIENCE])
    try:
        is_valid = scalekit_client.validate_access_token(token, options=options)
        if not is_valid:
            raise ValueError("Invalid token")
    except Exception:
        return Response(
            '{"error": "Token validation failed"}',
            status_code=401,
            headers=WWW_HEADER,
            media_type="application/json",
        )
    return await call_next(request)


@app.get("/health")
async def health_check():
    return {"status": "healthy"}


@app.get("/.well-known/oauth-protected-resource")
async def oauth_metadata():
    metadata = json.loads(PROTECTED_RESOURCE_METADATA)
    return Response(json.dumps(metadata, indent=2), media_type="application/json")


app.mount("/", mcp_app)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, workers=1, log_level="warning")
