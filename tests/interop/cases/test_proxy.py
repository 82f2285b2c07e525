"""Case: the official Python MCP SDK's stdio client launches `scalekit-mcp proxy <serve --dev URL>`,
as a desktop client does. The login is stored first (`login`, the test playing the browser); the
SDK then lists tools, calls `greet_user` and `whoami`, and with `--dev-token-ttl 5s` keeps calling
for 20 s while the proxy refreshes the token under it. No token reaches the proxy's stderr.
"""

from __future__ import annotations

import asyncio
import time

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from support import BIN, assert_no_secret, browser_login, start_serve


def test_python_sdk_stdio_client_through_the_proxy(procs, tmp_path, cli):
    cli.require("proxy")
    serve, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve", "--dev-token-ttl", "5s"])
    code, _, err, _, _ = browser_login(cli, server)
    assert code == 0, err
    first = cli.credentials()

    errlog_path = tmp_path / "proxy-stderr.log"
    with errlog_path.open("w") as errlog:
        names, greetings, whoami = asyncio.run(
            proxy_session(server, cli.env, errlog, seconds=20)
        )

    assert names == ["greet_user", "whoami"]
    assert greetings[0] == "Hi Ada 1, welcome to Scalekit!"
    assert len(greetings) >= 5 and all(g.startswith("Hi Ada ") for g in greetings), greetings
    assert '"sub": "dev-user"' in whoami or '"sub":"dev-user"' in whoami, whoami
    # The 5 s token was refreshed along the way: the stored secrets changed.
    assert cli.credentials() != first
    proxy_log = errlog_path.read_text()
    assert "refreshed the access token" in proxy_log, proxy_log
    secrets = [value for value in {**first, **cli.credentials()}.values() if isinstance(value, str)]
    assert_no_secret(proxy_log, *secrets)
    # The session was ended when the SDK closed the proxy's stdin.
    serve.wait_for(lambda: "method=DELETE" in serve.logs(), "the proxy's DELETE")


async def proxy_session(server: str, env: dict, errlog, seconds: float):
    """The SDK starts the proxy (its stderr into `errlog`), lists the tools, asks whoami, and calls
    greet_user every 3 s for `seconds`."""
    params = StdioServerParameters(command=BIN, args=["proxy", server, "--no-login"], env=env)
    greetings = []
    async with Client(stdio_client(params, errlog=errlog)) as client:
        tools = await client.list_tools()
        whoami = await client.call_tool("whoami", {})
        deadline = time.monotonic() + seconds
        round_ = 0
        while True:
            round_ += 1
            result = await client.call_tool("greet_user", {"name": f"Ada {round_}"})
            assert result.is_error is False, result
            greetings.append(result.content[0].text)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(3)
    return [tool.name for tool in tools.tools], greetings, whoami.content[0].text
