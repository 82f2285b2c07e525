"""A FastMCP server for the interop suite: `greet_user` like ours, with its own wording so the
tests can tell which server answered.

    python fastmcp_server.py stdio
    python fastmcp_server.py http --port P --token T    # static bearer token T required

The token comes from the command line only in this test peer; it is random per test run.
"""

import argparse

from fastmcp import FastMCP
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
