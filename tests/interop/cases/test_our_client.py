"""Case 3: our client (`scalekit-mcp tools` and `call`) against MCP servers no one here wrote:
FastMCP (Python) over Streamable HTTP with a static bearer token and over stdio, and a server on
the official TypeScript SDK over HTTP (behind the SDK's `requireBearerAuth`) and stdio.

Each peer is first checked with the MCP Inspector, so a failure here is ours, not a broken peer.
`call` and `tools` come from the call-tools branch: without them these cases FAIL with
"call/tools not built" (they are never skipped).
"""

from __future__ import annotations

import json
import os

import pytest

from support import (
    BIN,
    NODE,
    PEERS,
    PYTHON,
    assert_no_secret,
    free_port,
    node_tool,
    random_token,
    run,
    scrubbed_env,
)


def fastmcp_http(procs, tmp_path, token: str) -> str:
    port = free_port()
    proc = procs("fastmcp", [PYTHON, str(PEERS / "fastmcp_server.py"), "http", "--port", str(port),
                             "--token", token], dict(os.environ, FASTMCP_SHOW_SERVER_BANNER="false"))
    url = f"http://127.0.0.1:{port}/mcp"
    # Up once it answers an unauthenticated POST with its 401.
    proc.wait_for(lambda: _status(url) == 401, "a 401 from FastMCP")
    return url


def ts_sdk_http(procs, tmp_path, token: str) -> str:
    proc = procs("ts-sdk", [NODE, str(PEERS / "ts-sdk-server.mjs"), "http"], dict(os.environ, INTEROP_TOKEN=token))
    return proc.wait_for_line(r"^ready (\S+)$").group(1)


def _status(url: str) -> int | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


FASTMCP_STDIO = [PYTHON, str(PEERS / "fastmcp_server.py"), "stdio"]
TS_SDK_STDIO = [NODE, str(PEERS / "ts-sdk-server.mjs"), "stdio"]

PEER_HTTP = {"fastmcp": (fastmcp_http, "Hello {}, from FastMCP!"),
             "ts-sdk": (ts_sdk_http, "Hello {}, from the TypeScript SDK!")}
PEER_STDIO = {"fastmcp": (FASTMCP_STDIO, "Hello {}, from FastMCP!"),
              "ts-sdk": (TS_SDK_STDIO, "Hello {}, from the TypeScript SDK!")}


def inspector_greets(tmp_path, target: list[str], expected: str, token: str | None = None) -> None:
    """The peer answers the MCP Inspector as expected (the control for our client's run)."""
    home = tmp_path / "inspector-home"
    home.mkdir(exist_ok=True)
    argv = [node_tool("mcp-inspector"), "--cli", "--format", "json", "--method", "tools/call",
            "--tool-name", "greet_user", "--tool-arg", "name=Ada"]
    if token:
        argv += ["--header", f"Authorization: Bearer {token}", "--server-url", target[0], "--transport", "http"]
    else:
        argv += ["--transport", "stdio", "--", *target]
    result = run(argv, scrubbed_env(home), timeout=90, cwd=home)
    assert result.code == 0, f"the peer itself fails with the MCP Inspector: {result}"
    assert json.loads(result.out)["result"]["content"][0]["text"] == expected


def assert_printed(out: str, text: str) -> None:
    """`call` printed the tool's text and nothing else."""
    assert out == text + "\n", (
        f"call printed {out!r}, expected just {text + chr(10)!r}. FastMCP wraps a returned string "
        "as structuredContent {'result': ...} beside the same text: see tests/interop/README.md, "
        "'FastMCP results print twice'"
    )


@pytest.mark.parametrize("peer", sorted(PEER_HTTP))
def test_tools_and_call_over_http_with_a_static_token(peer, procs, tmp_path, cli):
    start, greeting = PEER_HTTP[peer]
    token = random_token()
    url = start(procs, tmp_path, token)
    inspector_greets(tmp_path, [url], greeting.format("Ada"), token=token)
    cli.require("call", "tools")

    listed = cli("tools", "--server", url, "--token", token)
    assert listed.code == 0, listed
    assert "greet_user" in listed.out, listed.out
    called = cli("call", "greet_user", "name=x", "--server", url, "--token", token)
    assert called.code == 0, called
    assert_printed(called.out, greeting.format("x"))
    as_json = cli("call", "greet_user", "name=x", "--server", url, "--token", token, "--json")
    assert json.loads(as_json.out)["content"][0]["text"] == greeting.format("x"), as_json.out
    # The token also works from the environment.
    env_call = run([BIN, "call", "greet_user", "name=env", "--server", url],
                   dict(cli.env, SCALEKIT_MCP_TOKEN=token), cwd=cli.home)
    assert env_call.code == 0 and env_call.out.strip() == greeting.format("env"), env_call
    assert_no_secret(listed.both + called.both + as_json.both + env_call.both, token)

    refused = cli("call", "greet_user", "name=x", "--server", url, "--token", random_token())
    assert refused.code == 3, refused  # DESIGN.md: 3 = authentication failed
    assert refused.out == ""


@pytest.mark.parametrize("peer", sorted(PEER_STDIO))
def test_tools_and_call_over_stdio(peer, tmp_path, cli):
    command, greeting = PEER_STDIO[peer]
    inspector_greets(tmp_path, command, greeting.format("Ada"))
    cli.require("call", "tools")

    # Generous: starting Python and importing FastMCP counts against --timeout, and CI is slow.
    listed = cli("tools", "--timeout", "120s", "--", *command, timeout=150)
    assert listed.code == 0, listed
    assert "greet_user" in listed.out, listed.out
    called = cli("call", "greet_user", "name=x", "--timeout", "120s", "--", *command, timeout=150)
    assert called.code == 0, called
    assert_printed(called.out, greeting.format("x"))


def test_a_tool_error_from_fastmcp_exits_5(cli):
    cli.require("call")
    failed = cli("call", "fail_always", "reason=interop", "--timeout", "120s", "--", *FASTMCP_STDIO,
                 timeout=150)
    assert failed.code == 5, failed  # DESIGN.md: 5 = the tool reported an error
    assert "failed on purpose: interop" in failed.err, failed
