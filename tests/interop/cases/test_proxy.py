"""Case: the official Python MCP SDK's stdio client launches `scalekit-mcp proxy <URL>`, as a
desktop client does.

- `serve --dev`: the login is stored first (`login`, the test playing the browser); the SDK then
  lists tools, calls `greet_user` and `whoami`, and with `--dev-token-ttl 5s` keeps calling for
  20 s while the proxy refreshes the token under it.
- The gateway, `serve --dev -- <server-everything over stdio>`, with a token given in
  SCALEKIT_MCP_TOKEN: server-everything asks the SDK client for a sampling and an elicitation in
  the middle of a tool call; both requests cross the proxy and the gateway, and the client's
  answers come back in the tools' results.
- oidc-provider as the authorization server: a login stored by `scalekit-mcp login` (its forms
  played by the test's browser), then the proxy lists tools and calls them with it, across a
  refresh and a restart of `serve` (the proxy initializes the new server's session by itself).

No token reaches the proxy's stderr.
"""

from __future__ import annotations

import asyncio
import json
import time

import mcp_types as types
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from support import BIN, assert_no_secret, browser_login, jwt_claims, scrubbed_env, start_serve
from test_gateway import EVERYTHING, dev_token, text_of
from test_oidc_provider import oidc_stack


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


def test_sampling_and_elicitation_cross_the_proxy_and_the_gateway(procs, tmp_path, cli):
    """proxy (stdio) -> serve --dev -- server-everything (stdio): the upstream's sampling and
    elicitation requests reach the SDK's callbacks, and their answers reach the upstream."""
    cli.require("proxy")
    serve, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve", "--", *EVERYTHING])
    _, token = dev_token(server)
    sampled: list[types.CreateMessageRequestParams] = []
    elicited: list[types.ElicitRequestParams] = []

    async def sample(_context, params: types.CreateMessageRequestParams):
        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="a sampled answer through the proxy"),
            model="proxy-interop-model",
            stop_reason="endTurn",
        )

    async def elicit(_context, params):
        elicited.append(params)
        return types.ElicitResult(action="accept", content={"name": "Grace Hopper", "check": True, "integer": 11})

    async def scenario(errlog):
        params = StdioServerParameters(
            command=BIN, args=["proxy", server], env=scrubbed_env(cli.home, SCALEKIT_MCP_TOKEN=token)
        )
        async with Client(stdio_client(params, errlog=errlog),
                          sampling_callback=sample, elicitation_callback=elicit) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            sampling = await client.call_tool("trigger-sampling-request",
                                              {"prompt": "why is the sea salty?", "maxTokens": 21})
            elicitation = await client.call_tool("trigger-elicitation-request", {})
            return client.server_info, names, sampling, elicitation

    errlog_path = tmp_path / "proxy-stderr.log"
    with errlog_path.open("w") as errlog:
        info, names, sampling, elicitation = asyncio.run(asyncio.wait_for(scenario(errlog), 90))

    # The upstream saw the client's capabilities (it lists these tools only to a client that
    # declares sampling and elicitation).
    assert info.name == "mcp-servers/everything", info
    assert {"trigger-sampling-request", "trigger-elicitation-request"} <= names, names

    (asked,) = sampled
    assert asked.messages[0].content.text == "Resource trigger-sampling-request context: why is the sea salty?"
    assert asked.max_tokens == 21 and asked.system_prompt == "You are a helpful test server.", asked
    text = text_of(sampling)
    assert text.startswith("LLM sampling result:"), text
    answer = json.loads(text.partition("\n")[2])
    assert answer["model"] == "proxy-interop-model", answer
    assert answer["content"] == {"type": "text", "text": "a sampled answer through the proxy"}, answer

    (asked,) = elicited
    assert asked.message == "Please provide inputs for the following fields:", asked
    assert asked.requested_schema["required"] == ["name"], asked.requested_schema
    text = text_of(elicitation)
    assert "User provided the requested information!" in text, text
    assert "- Name: Grace Hopper" in text and "- Agreed to terms: true" in text, text
    assert "- Favorite Integer: 11" in text, text

    proxy_log = errlog_path.read_text()
    assert f"proxying stdio to {server}" in proxy_log, proxy_log
    assert_no_secret(proxy_log, token)
    assert_no_secret(serve.logs(), token)
    # The session (and with it the upstream child) was ended when the SDK closed the proxy.
    serve.wait_for(lambda: "method=DELETE" in serve.logs(), "the proxy's DELETE")


def test_a_login_stored_against_oidc_provider_serves_the_proxy(procs, tmp_path, cli):
    """`scalekit-mcp login` against oidc-provider (registration, PKCE, the test's browser through
    its login and consent forms), then `proxy --no-login` uses that login: tools are listed and
    called as the user who logged in, and after the 10 s access token has expired the next call
    still succeeds: the proxy refreshed it at oidc-provider, which rotates the refresh token."""
    cli.require("proxy")
    _, server, serve = oidc_stack(procs, tmp_path, ttl=10)
    code, out, err, _, _ = browser_login(cli, server)
    assert code == 0, f"{out}\n{err}"
    first = cli.credentials()

    async def scenario(errlog):
        params = StdioServerParameters(command=BIN, args=["proxy", server, "--no-login"], env=cli.env)
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = await client.list_tools()
            greeting = await client.call_tool("greet_user", {"name": "Ada"})
            whoami = await client.call_tool("whoami", {})
            # Outlive the access token the proxy holds now.
            latest = cli.credentials()[f"access-token:{server}"]
            await asyncio.sleep(max(0.0, jwt_claims(latest)["exp"] - time.time()) + 1.5)
            later = await client.call_tool("greet_user", {"name": "Grace"})
            # A restart of serve forgets every session: the client notices nothing.
            serve.stop()
            restarted = procs("serve-restarted", serve.argv, serve.env, cwd=serve.cwd)
            restarted.wait_for_http(f"{server}ready")
            after_restart = await client.call_tool("greet_user", {"name": "Hopper"})
            assert text_of(after_restart) == "Hi Hopper, welcome to Scalekit!", after_restart
            return [tool.name for tool in tools.tools], greeting, whoami, later, restarted

    errlog_path = tmp_path / "proxy-stderr.log"
    with errlog_path.open("w") as errlog:
        names, greeting, whoami, later, serve = asyncio.run(asyncio.wait_for(scenario(errlog), 90))

    assert names == ["greet_user", "whoami"], names
    assert text_of(greeting) == "Hi Ada, welcome to Scalekit!"
    claims = text_of(whoami)
    assert '"sub": "interop-user"' in claims or '"sub":"interop-user"' in claims, claims
    assert text_of(later) == "Hi Grace, welcome to Scalekit!"
    after = cli.credentials()
    assert after[f"refresh-token:{server}"] != first[f"refresh-token:{server}"], "rotated at oidc-provider"
    proxy_log = errlog_path.read_text()
    assert "refreshed the access token" in proxy_log, proxy_log
    assert "Open this URL" not in proxy_log, proxy_log
    assert "forgot the MCP session" in proxy_log, proxy_log
    secrets = [value for value in {**first, **after}.values() if isinstance(value, str)]
    assert_no_secret(proxy_log, *secrets)
    assert_no_secret(serve.logs(), *secrets)
    serve.wait_for(lambda: "method=DELETE" in serve.logs(), "the proxy's DELETE")
