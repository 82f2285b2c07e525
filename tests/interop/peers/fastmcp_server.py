"""A FastMCP server for the interop suite: `greet_user` like ours, with its own wording so the
tests can tell which server answered, and `forwarded_identity`, which reports who a gateway in
front of it said the caller is (the X-Forwarded-* headers FastMCP received and the caller in the
request's `_meta`; only whether an Authorization header came, never its value).

    python fastmcp_server.py stdio
    python fastmcp_server.py http --port P --token T    # static bearer token T required

The token comes from the command line only in this test peer; it is random per test run.
"""

import argparse

from fastmcp import Context, FastMCP
from fastmcp.server.dependencies import get_http_headers
from fastmcp.server.auth.providers.jwt import StaticTokenVerifier


def build(token: str | None) -> FastMCP:
    auth = None
    if token:
        auth = StaticTokenVerifier(
            tokens={token: {"client_id": "interop", "scopes": ["mcp:tools"], "sub": "interop-user"}},
        )
    mcp = FastMCP("fastmcp-interop", auth=auth)

    @mcp.tool
    def greet_user(name: str) -> str:
        """Greets the user by name."""
        return f"Hello {name}, from FastMCP!"

    @mcp.tool
    def fail_always(reason: str) -> str:
        """Always fails, with the given reason."""
        raise ValueError(f"failed on purpose: {reason}")

    @mcp.tool
    def forwarded_identity(ctx: Context) -> dict:
        """Who the gateway in front of this server says is calling."""
        # get_http_headers() drops Authorization unless asked for it; its presence is all we report.
        headers = get_http_headers(include={"authorization"})
        meta = ctx.request_context.meta if ctx.request_context is not None else None
        return {
            "headers": {name: value for name, value in headers.items() if name.startswith("x-forwarded-")},
            "authorization_present": "authorization" in headers,
            "caller_meta": (meta or {}).get("scalekit-mcp/caller"),
        }

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    args = parser.parse_args()
    mcp = build(args.token)
    if args.transport == "stdio":
        mcp.run("stdio", show_banner=False)
    else:
        mcp.run("http", host="127.0.0.1", port=args.port, path="/mcp", show_banner=False, log_level="warning")


if __name__ == "__main__":
    main()
