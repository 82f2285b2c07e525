"""Case 2b: the MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.x, on Node 22) against
`serve`: tools/list and tools/call with an Authorization header, and its auth exit code (3,
`auth_required`) without a token or with a bad one.
"""

from __future__ import annotations

import json

from support import assert_no_secret, browser_login, node_tool, run, scrubbed_env, start_serve

AUTH_REQUIRED = 3  # the Inspector CLI's EXIT_CODES.AUTH_REQUIRED


def inspector(home, server: str, *args: str, token: str | None = None):
    argv = [node_tool("mcp-inspector"), "--cli", "--server-url", server, "--transport", "http",
            "--stored-auth-only", "--format", "json", *args]
    if token:
        argv += ["--header", f"Authorization: Bearer {token}"]
    return run(argv, scrubbed_env(home), timeout=90, cwd=home)


def test_inspector_lists_and_calls_tools_with_a_bearer_token(procs, tmp_path, cli):
    _, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve"])
    code, out, err, _, _ = browser_login(cli, server)
    assert code == 0, f"{out}\n{err}"
    token = cli("token").ok().out.strip()
    home = tmp_path / "inspector-home"
    home.mkdir()

    listed = inspector(home, server, "--method", "tools/list", token=token)
    assert listed.code == 0, listed
    tools = {tool["name"]: tool for tool in json.loads(listed.out)["result"]["tools"]}
    assert sorted(tools) == ["greet_user", "whoami"], listed.out
    assert tools["greet_user"]["inputSchema"]["required"] == ["name"], tools["greet_user"]

    called = inspector(home, server, "--method", "tools/call", "--tool-name", "greet_user",
                       "--tool-arg", "name=Ada", token=token)
    assert called.code == 0, called
    result = json.loads(called.out)["result"]
    assert result["isError"] is False
    assert result["content"] == [{"type": "text", "text": "Hi Ada, welcome to Scalekit!"}], result

    whoami = inspector(home, server, "--method", "tools/call", "--tool-name", "whoami", token=token)
    assert '"sub": "dev-user"' in whoami.out or '\\"sub\\":\\"dev-user\\"' in whoami.out, whoami.out
    assert_no_secret(listed.both + called.both + whoami.both, token)


def test_inspector_exits_with_its_auth_code_without_a_valid_token(procs, tmp_path):
    _, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve"])
    home = tmp_path / "inspector-home"
    home.mkdir()

    missing = inspector(home, server, "--method", "tools/list")
    assert missing.code == AUTH_REQUIRED, missing
    error = json.loads(missing.err.strip().splitlines()[-1])["error"]
    assert error["code"] == "auth_required", error
    assert "missing bearer token" in error["message"], error  # our 401 body, as the Inspector shows it
    assert missing.out == ""

    bad = inspector(home, server, "--method", "tools/list", token="not-a-jwt")
    assert bad.code == AUTH_REQUIRED, bad
    error = json.loads(bad.err.strip().splitlines()[-1])["error"]
    assert error["code"] == "auth_required" and "invalid_token" in error["message"], error
