"""Case 6: `serve` as a gateway (issue 18) in front of MCP servers no one here wrote, driven by the
official Python MCP SDK client (`mcp` 2.x) with a bearer token from `serve --dev`.

- `@modelcontextprotocol/server-everything`, the reference server that exercises the whole
  protocol, behind `serve --dev -- node <its dist/index.js> stdio` (a child per session) and,
  as `[http]`, behind `serve --dev --upstream <peers/everything-http.mjs>` (the same server over
  Streamable HTTP on 127.0.0.1). One case per feature, each asserting what the client got:
  initialize (server info, capabilities, protocol version), tools (list, call), the client's
  capabilities reaching the upstream, progress (the client's callback and token), sampling,
  elicitation and roots (the upstream asks the client; the answer reaches the tool's result),
  resources (list, templates, read, subscribe, updates), tasks (list, get, result), prompts
  (list, get), completion, ping,
  logging (setLevel filters; log notifications in and outside a request), and for stdio the
  caller in the child's environment.
- A FastMCP server behind `serve --dev --upstream http://127.0.0.1:P/mcp` returns the
  `X-Forwarded-*` headers and the `_meta` caller it received: the validated caller, not what the
  client claims; it accepts only the gateway's own token (`--upstream-bearer-env`).
- Without a token (or with a bad one) the gateway answers 401 with its challenge and starts no
  upstream.

Tokens come from the development authorization server's `client_credentials` grant (a
confidential client registered at /dev-auth/register), so `sub` is the client id. No token is
printed: assert_no_secret checks the logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.error
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from support import (
    NODE,
    NODE_BIN,
    PEERS,
    PYTHON,
    Proc,
    assert_no_secret,
    free_port,
    http_json,
    random_token,
    start_serve,
)

# logging/setLevel and resources/subscribe are deprecated in the 2026-07-28 revision; the
# upstreams here speak 2025-11-25, where they are current.
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

# The package's own entry point (its `bin`); its first argument picks the transport.
EVERYTHING_DIR = Path(NODE_BIN).parent / "@modelcontextprotocol/server-everything"
EVERYTHING = [NODE, str(EVERYTHING_DIR / "dist/index.js"), "stdio"]
EVERYTHING_VERSION = "2026.8.31"


def dev_token(server: str) -> tuple[str, str]:
    """A client_credentials token for `server` (its resource) from `serve --dev`; returns
    (client id, token). The token stays in the test: it is never printed."""
    request = urllib.request.Request(
        f"{server}dev-auth/register",
        data=json.dumps({
            "client_name": "gateway-interop",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
        }).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        client = json.loads(response.read())
    status, body = http_json(f"{server}dev-auth/token", form={
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "scope": "mcp:tools",
        "resource": server,
    })
    assert status == 200 and body.get("token_type", "").lower() == "bearer", (status, body.get("error"))
    return client["client_id"], body["access_token"]


@dataclass
class Gateway:
    serve: Proc
    server: str  # the gateway's MCP URL
    client_id: str
    token: str
    upstream: str  # "stdio" or "http"


def everything_gateway(procs, tmp_path, upstream: str = "stdio", flags: tuple[str, ...] = ()) -> Gateway:
    """`serve --dev` (with `flags`) in front of server-everything: a child per session over stdio,
    or our peers/everything-http.mjs over Streamable HTTP."""
    assert Path(EVERYTHING[1]).is_file(), f"{EVERYTHING[1]} is missing: run tests/interop/run"
    if upstream == "stdio":
        target = ["--", *EVERYTHING]
    else:
        peer = procs("everything-http", [NODE, str(PEERS / "everything-http.mjs")], dict(os.environ))
        target = ["--upstream", peer.wait_for_line(r"^ready (\S+)$").group(1)]
    serve, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve", *flags, *target])
    client_id, token = dev_token(server)
    return Gateway(serve, server, client_id, token, upstream)


@pytest.fixture(params=["stdio", "http"])
def everything(procs, tmp_path, request) -> Gateway:
    """The gateway in front of server-everything, once per kind of upstream."""
    return everything_gateway(procs, tmp_path, request.param)


@asynccontextmanager
async def connected(server: str, token: str, headers: dict | None = None, mode: str = "legacy", **options):
    """The SDK's Client over Streamable HTTP with `Authorization: Bearer <token>`.

    `mode="legacy"` is the initialize handshake (what every 2025 client does). The SDK's default,
    `"auto"`, first probes `server/discover` (2026-07-28); test_gateway_with_the_sdks_default_
    negotiation checks that the gateway answers it honestly, the other cases test the rest."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **(headers or {})},
                                  timeout=30) as http:
        async with Client(streamable_http_client(server, http_client=http), mode=mode, **options) as client:
            yield client


def text_of(result) -> str:
    assert not result.is_error, result
    return "".join(block.text for block in result.content if block.type == "text")


def run_async(coroutine, timeout: float = 90):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def test_the_pinned_server_everything_is_installed():
    package = json.loads((EVERYTHING_DIR / "package.json").read_text())
    assert package["version"] == EVERYTHING_VERSION, package["version"]


def test_gateway_lists_and_calls_server_everything_tools(everything):
    serve, server, token = everything.serve, everything.server, everything.token

    async def scenario():
        async with connected(server, token) as client:
            tools = await client.list_tools()
            echo = await client.call_tool("echo", {"message": "through the gateway"})
            total = await client.call_tool("get-sum", {"a": 2, "b": 40})
            return client.protocol_version, client.server_info, client.server_capabilities, tools, echo, total

    version, info, capabilities, tools, echo, total = run_async(scenario())
    # The upstream's initialize answer is the client's.
    assert version == "2025-11-25", version
    assert info.name == "mcp-servers/everything" and info.version == "2.0.0", info
    assert capabilities.resources.subscribe is True and capabilities.logging is not None, capabilities
    names = {tool.name for tool in tools.tools}
    assert {"echo", "get-sum", "get-env", "trigger-long-running-operation",
            "toggle-simulated-logging"} <= names, names
    echo_tool = next(tool for tool in tools.tools if tool.name == "echo")
    assert echo_tool.input_schema["required"] == ["message"], echo_tool.input_schema
    assert text_of(echo) == "Echo: through the gateway"
    assert text_of(total) == "The sum of 2 and 40 is 42."
    if everything.upstream == "stdio":
        # The session's child ran, and its stderr went to the gateway's log.
        serve.wait_for_log("Starting default (STDIO) server")
    assert_no_secret(serve.logs(), token)


def test_gateway_with_the_sdks_default_negotiation(everything):
    """The SDK's default `mode="auto"` sends `server/discover` first and skips `initialize` when
    the answer lists a 2026-07-28 version; it falls back to `initialize` on an error or on a
    list of handshake-era versions only. server-everything is handshake-era (2025-11-25), so the
    gateway must not claim 2026-07-28 for it: the client then has to initialize, and tools work."""
    server, token = everything.server, everything.token

    async def scenario():
        async with connected(server, token, mode="auto") as client:
            version = client.protocol_version
            echo = await client.call_tool("echo", {"message": "negotiated"})
            return version, client.server_info, echo

    version, info, echo = run_async(scenario())
    assert version == "2025-11-25", f"negotiated {version}, which server-everything does not speak"
    assert info is not None and info.name == "mcp-servers/everything", info
    assert text_of(echo) == "Echo: negotiated"


def test_gateway_passes_the_clients_capabilities_upstream(everything):
    """server-everything registers its sampling and elicitation tools only for a client that
    declares those capabilities: they appear only when the SDK client has the callbacks."""
    server, token = everything.server, everything.token

    async def sample(_context, _params):
        return types.ErrorData(code=-1, message="unused")

    async def elicit(_context, _params):
        return types.ElicitResult(action="decline")

    async def scenario():
        async with connected(server, token) as plain:
            without = {tool.name for tool in (await plain.list_tools()).tools}
        async with connected(server, token, sampling_callback=sample, elicitation_callback=elicit) as able:
            with_callbacks = {tool.name for tool in (await able.list_tools()).tools}
        return without, with_callbacks

    without, with_callbacks = run_async(scenario())
    assert "trigger-sampling-request" not in without and "trigger-elicitation-request" not in without, without
    assert {"trigger-sampling-request", "trigger-elicitation-request"} <= with_callbacks, with_callbacks


def test_gateway_relays_progress_to_the_clients_callback(everything):
    server, token = everything.server, everything.token
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, _message: str | None) -> None:
        seen.append((progress, total))

    async def scenario():
        async with connected(server, token) as client:
            return await client.call_tool("trigger-long-running-operation", {"duration": 1.5, "steps": 3},
                                          progress_callback=on_progress)

    result = run_async(scenario())
    assert text_of(result) == "Long running operation completed. Duration: 1.5 seconds, Steps: 3."
    assert seen == [(1, 3), (2, 3), (3, 3)], seen


def test_gateway_relays_sampling_and_its_answer(everything):
    server, token = everything.server, everything.token
    asked: list[types.CreateMessageRequestParams] = []

    async def sample(_context, params: types.CreateMessageRequestParams):
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="a sampled answer from the interop client"),
            model="interop-model",
            stop_reason="endTurn",
        )

    async def scenario():
        async with connected(server, token, sampling_callback=sample) as client:
            return await client.call_tool("trigger-sampling-request", {"prompt": "why is the sky blue?",
                                                                       "maxTokens": 33})

    result = run_async(scenario())
    (params,) = asked
    assert params.messages[0].content.text == "Resource trigger-sampling-request context: why is the sky blue?"
    assert params.max_tokens == 33 and params.system_prompt == "You are a helpful test server.", params
    text = text_of(result)
    assert text.startswith("LLM sampling result:"), text
    answer = json.loads(text.partition("\n")[2])
    assert answer["model"] == "interop-model", answer
    assert answer["content"] == {"type": "text", "text": "a sampled answer from the interop client"}, answer


def test_gateway_relays_elicitation_and_its_answer(everything):
    server, token = everything.server, everything.token
    asked: list[types.ElicitRequestParams] = []

    async def elicit(_context, params):
        asked.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True, "integer": 7})

    async def scenario():
        async with connected(server, token, elicitation_callback=elicit) as client:
            return await client.call_tool("trigger-elicitation-request", {})

    result = run_async(scenario())
    (params,) = asked
    assert params.message == "Please provide inputs for the following fields:", params
    assert params.requested_schema["required"] == ["name"], params.requested_schema
    text = text_of(result)
    assert "User provided the requested information!" in text, text
    assert "- Name: Ada Lovelace" in text and "- Agreed to terms: true" in text, text
    assert "- Favorite Integer: 7" in text, text


def test_gateway_relays_roots_both_ways(everything):
    """server-everything asks the client for its roots (roots/list) right after initialize, and
    again when the client says they changed (notifications/roots/list_changed, client to
    upstream); its get-roots-list tool returns what it was told."""
    server, token = everything.server, everything.token
    roots = [types.Root(uri="file:///interop/first", name="first root")]
    asked = 0

    async def list_roots(_context):
        nonlocal asked
        asked += 1
        return types.ListRootsResult(roots=list(roots))

    async def wait_until(condition):
        for _ in range(100):
            if condition():
                return
            await asyncio.sleep(0.1)

    async def scenario():
        async with connected(server, token, list_roots_callback=list_roots) as client:
            await wait_until(lambda: asked >= 1)
            before = await client.call_tool("get-roots-list", {})
            asked_before = asked
            roots.append(types.Root(uri="file:///interop/second", name="second root"))
            await client.send_roots_list_changed()
            await wait_until(lambda: asked > asked_before)
            after = await client.call_tool("get-roots-list", {})
            return before, after

    before, after = run_async(scenario())
    assert text_of(before).startswith("Current MCP Roots (1 total):\n\n1. first root\n   URI: file:///interop/first"), text_of(before)
    assert text_of(after).startswith(
        "Current MCP Roots (2 total):\n\n1. first root\n   URI: file:///interop/first\n\n"
        "2. second root\n   URI: file:///interop/second"), text_of(after)


def test_gateway_lists_and_reads_resources(everything):
    server, token = everything.server, everything.token
    features_uri = DOCUMENT

    async def scenario():
        async with connected(server, token) as client:
            listed = await client.list_resources()
            templates = await client.list_resource_templates()
            document = await client.read_resource(features_uri)
            dynamic = await client.read_resource("demo://resource/dynamic/text/7")
            return listed, templates, document, dynamic

    listed, templates, document, dynamic = run_async(scenario())
    uris = {str(resource.uri) for resource in listed.resources}
    assert features_uri in uris, uris
    assert "demo://resource/dynamic/text/{resourceId}" in {t.uri_template for t in templates.resource_templates}
    (content,) = document.contents
    assert content.mime_type == "text/markdown"
    assert content.text == (EVERYTHING_DIR / "dist/docs/features.md").read_text()
    (content,) = dynamic.contents
    assert content.text.startswith("Resource 7: This is a plaintext resource created at "), content.text


def test_gateway_lists_and_gets_prompts(everything):
    server, token = everything.server, everything.token

    async def scenario():
        async with connected(server, token) as client:
            listed = await client.list_prompts()
            prompt = await client.get_prompt("args-prompt", {"city": "Lisbon", "state": "Estremadura"})
            return listed, prompt

    listed, prompt = run_async(scenario())
    prompts = {p.name: p for p in listed.prompts}
    assert {"simple-prompt", "args-prompt", "resource-prompt"} <= set(prompts), set(prompts)
    arguments = {a.name: a.required for a in prompts["args-prompt"].arguments}
    assert arguments == {"city": True, "state": False}, arguments
    (message,) = prompt.messages
    assert message.role == "user" and message.content.text == "What's weather in Lisbon, Estremadura?"


LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
DOCUMENT = "demo://resource/static/document/features.md"


def test_gateway_passes_set_level_and_log_notifications(everything):
    """logging/setLevel reaches the upstream, and its notifications/message reach the client:
    server-everything logs at info level while it handles resources/subscribe and
    resources/unsubscribe, through its per-session level filter."""
    server, token = everything.server, everything.token
    messages: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        messages.append(params)

    async def scenario():
        async with connected(server, token, logging_callback=on_log) as client:
            await client.set_logging_level("debug")
            await client.subscribe_resource(DOCUMENT)
            # On the GET stream (see test_gateway_sends_a_requests_progress_on_its_stream).
            for _ in range(50):
                if messages:
                    break
                await asyncio.sleep(0.1)
            after_subscribe = list(messages)
            await client.set_logging_level("warning")
            await client.unsubscribe_resource(DOCUMENT)
            await asyncio.sleep(1)
            return after_subscribe, list(messages)

    after_subscribe, after_unsubscribe = run_async(scenario())
    assert [m.level for m in after_subscribe] == ["info"], after_subscribe
    # From a stdio child "…features.md ", over HTTP "…features.md from session <its id>".
    assert after_subscribe[0].data.startswith(f"Received Subscribe Resource request for URI: {DOCUMENT} ")
    # At warning, the upstream drops its info line about the unsubscribe.
    assert after_unsubscribe == after_subscribe, after_unsubscribe


def mcp_post(server: str, token: str, body: dict, session: str | None = None) -> tuple[int, str | None, list]:
    """One POST to the MCP endpoint, as a client without a GET stream sees it: (status, the
    session id, the JSON-RPC messages of its answer in order)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {token}"}
    if session:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    request = urllib.request.Request(server, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
        status, session_id = response.status, response.headers.get("Mcp-Session-Id")
    if not text.strip():
        return status, session_id, []
    if text.lstrip().startswith("{"):
        return status, session_id, [json.loads(text)]
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return status, session_id, [json.loads(d) for d in data if d]


def test_gateway_sends_a_requests_progress_on_its_stream(procs, tmp_path):
    """Progress the stdio upstream reports while it handles a request comes on that request's SSE
    stream, before the answer, with the client's own progress token, so that a client without
    the optional GET stream gets it too and in order; and nothing else does: server-everything
    announces a tool list change on its own soon after the session starts, which belongs on the
    GET stream, not on a request's (it once landed in this call's)."""
    gateway = everything_gateway(procs, tmp_path)
    server, token = gateway.server, gateway.token
    _, session, _ = mcp_post(server, token, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}})
    assert session, "no Mcp-Session-Id"
    mcp_post(server, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    _, _, progress = mcp_post(server, token, {
        "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation", "arguments": {"duration": 0.3, "steps": 3},
            "_meta": {"progressToken": "interop-progress"}}}, session)

    kinds = lambda messages: [m.get("method") or ("result" if "result" in m else "error") for m in messages]  # noqa: E731
    assert kinds(progress) == ["notifications/progress"] * 3 + ["result"], progress
    assert {m["params"]["progressToken"] for m in progress[:3]} == {"interop-progress"}, progress


def test_gateway_passes_log_notifications_sent_outside_any_request(everything):
    """server-everything's simulated logging sends a random level now and then every 5 s, with no
    request in flight: those reach the client on its standalone GET stream, filtered at the
    session's level (warning, so 5 levels of 8 pass)."""
    server, token = everything.server, everything.token
    messages: list[tuple[bool, types.LoggingMessageNotificationParams]] = []
    answered = False

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        messages.append((answered, params))

    async def scenario():
        nonlocal answered
        async with connected(server, token, logging_callback=on_log) as client:
            await client.set_logging_level("warning")
            started = await client.call_tool("toggle-simulated-logging", {})
            answered = True
            for _ in range(400):  # up to 40 s: 8 draws, each passing the filter with a chance of 5/8
                if any(after for after, _ in messages):
                    break
                await asyncio.sleep(0.1)
            stopped = await client.call_tool("toggle-simulated-logging", {})
            return started, stopped

    started, stopped = run_async(scenario(), timeout=80)
    assert text_of(started).startswith("Started simulated, random-leveled logging"), text_of(started)
    assert text_of(stopped).startswith("Stopped simulated logging"), text_of(stopped)
    assert any(after for after, _ in messages), f"no log message outside a request within 40 s: {messages}"
    for _, message in messages:
        assert LEVELS.index(message.level) >= LEVELS.index("warning"), (message, "below the level set")
        assert re.fullmatch(r"\w+[- ]level[- ]message.*", str(message.data), re.I), message.data


def test_gateway_passes_resource_subscriptions_and_updates(everything):
    """resources/subscribe reaches the upstream, and its notifications/resources/updated for that
    URI reach the client (server-everything's toggle-subscriber-updates sends one at once)."""
    server, token = everything.server, everything.token
    updated: list[str] = []

    async def on_message(message) -> None:
        notification = getattr(message, "root", message)
        if isinstance(notification, types.ResourceUpdatedNotification):
            updated.append(str(notification.params.uri))

    async def scenario():
        async with connected(server, token, message_handler=on_message) as client:
            await client.subscribe_resource(DOCUMENT)
            started = await client.call_tool("toggle-subscriber-updates", {})
            for _ in range(100):
                if updated:
                    break
                await asyncio.sleep(0.1)
            stopped = await client.call_tool("toggle-subscriber-updates", {})
            await client.unsubscribe_resource(DOCUMENT)
            return started, stopped

    started, stopped = run_async(scenario())
    assert text_of(started).startswith("Started simulated resource updated notifications"), text_of(started)
    assert text_of(stopped).startswith("Stopped simulated resource updates"), text_of(stopped)
    assert updated and set(updated) == {DOCUMENT}, updated


def test_gateway_passes_completion_and_ping(everything):
    server, token = everything.server, everything.token
    prompt = types.PromptReference(type="ref/prompt", name="completable-prompt")

    async def scenario():
        async with connected(server, token) as client:
            await client.send_ping()
            department = await client.complete(prompt, {"name": "department", "value": "S"})
            name = await client.complete(prompt, {"name": "name", "value": ""}, {"department": "Sales"})
            return department, name

    department, name = run_async(scenario())
    assert department.completion.values == ["Sales", "Support"], department
    assert name.completion.values == ["David", "Eve", "Frank"], name


def test_gateway_gives_the_stdio_child_the_caller(procs, tmp_path):
    """A stdio child gets the caller in MCP_FORWARDED_* and none of the gateway's own variables
    (server-everything's get-env returns its environment)."""
    gateway = everything_gateway(procs, tmp_path)
    server, client_id, token = gateway.server, gateway.client_id, gateway.token

    async def scenario():
        async with connected(server, token) as client:
            return await client.call_tool("get-env", {})

    env = json.loads(text_of(run_async(scenario())))
    assert env["MCP_FORWARDED_USER"] == client_id, {k: v for k, v in env.items() if k.startswith("MCP_")}
    assert env["MCP_FORWARDED_CLIENT_ID"] == client_id
    assert env["MCP_FORWARDED_SCOPES"] == "mcp:tools"
    assert not [key for key in env if key.startswith("SCALEKIT_MCP_") or key.startswith("SK_")], sorted(env)
    assert_no_secret(json.dumps(env), token)


def fastmcp_upstream(procs, upstream_token: str) -> str:
    port = free_port()
    proc = procs("fastmcp", [PYTHON, str(PEERS / "fastmcp_server.py"), "http", "--port", str(port),
                             "--token", upstream_token], dict(os.environ, FASTMCP_SHOW_SERVER_BANNER="false"))
    url = f"http://127.0.0.1:{port}/mcp"
    proc.wait_for(lambda: post_status(url, {}) == 401, "a 401 from FastMCP")
    return url


def post_status(url: str, body: dict, headers: dict | None = None) -> int | None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def test_gateway_forwards_the_caller_to_a_fastmcp_http_upstream(procs, tmp_path):
    """FastMCP behind `--upstream` sees X-Forwarded-User etc. and the `_meta` caller of the
    validated token, not what the client claims; it accepts only the gateway's own token (its
    StaticTokenVerifier would refuse the client's), so the client's token was not passed on."""
    upstream_token = random_token()
    upstream = fastmcp_upstream(procs, upstream_token)
    serve, server = start_serve(
        procs, tmp_path, ["--dev", "--dev-auto-approve", "--upstream", upstream,
                          "--upstream-bearer-env", "INTEROP_UPSTREAM_TOKEN"],
        env_extra={"INTEROP_UPSTREAM_TOKEN": upstream_token})
    client_id, token = dev_token(server)
    spoofed = {"X-Forwarded-User": "mallory", "X-Forwarded-Client-Id": "mallory-client",
               "X-Forwarded-Scopes": "admin"}

    async def scenario():
        async with connected(server, token, headers=spoofed) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            greeting = await client.call_tool("greet_user", {"name": "Ada"})
            identity = await client.call_tool(
                "forwarded_identity", {}, meta={"scalekit-mcp/caller": {"sub": "mallory"}})
            return names, greeting, identity

    names, greeting, identity = run_async(scenario())
    assert {"greet_user", "forwarded_identity"} <= names, names
    assert text_of(greeting) == "Hello Ada, from FastMCP!"
    assert not identity.is_error, identity
    seen = identity.structured_content
    assert seen["headers"].get("x-forwarded-user") == client_id, seen
    assert seen["headers"].get("x-forwarded-client-id") == client_id, seen
    assert seen["headers"].get("x-forwarded-scopes") == "mcp:tools", seen
    assert seen["authorization_present"] is True, seen
    caller = seen["caller_meta"]
    assert caller and caller["sub"] == client_id and caller["client_id"] == client_id, seen
    assert caller["scopes"] == ["mcp:tools"], seen
    # Dev tokens carry no organization: the header comes empty (the _meta caller has null).
    assert seen["headers"].get("x-forwarded-org-id", "") == "" and caller["org_id"] is None, seen
    assert_no_secret(serve.logs() + json.dumps(seen), token, upstream_token)


def test_gateway_without_a_token_gets_401_and_starts_no_upstream(procs, tmp_path):
    serve, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve", "--", *EVERYTHING])
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}}
    request = urllib.request.Request(server, data=json.dumps(initialize).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("the gateway answered a request without a token")
    except urllib.error.HTTPError as err:
        status, challenge = err.code, err.headers.get("WWW-Authenticate", "")
    assert status == 401, status
    assert challenge.startswith('Bearer realm="OAuth", resource_metadata="'), challenge
    assert "error=" not in challenge, challenge
    assert post_status(server, initialize, {"Authorization": f"Bearer {random_token()}"}) == 401
    # The child writes "Starting default (STDIO) server..." on stderr, which goes to our log under
    # its session's number; the readiness check's own child (child=N) is no session's.
    sessions = [line for line in serve.logs().splitlines()
                if "Starting default (STDIO) server" in line and "session=" in line]
    assert not sessions, serve.logs()


@pytest.mark.parametrize("upstream", ["stdio", "http"])
def test_stateless_gateway_in_front_of_server_everything(procs, tmp_path, upstream):
    """`serve --stateless` in front of server-everything: one shared upstream session (one child
    for stdio), each request forwarded on it, answered under the client's own ids; what the
    shared session could not deliver (subscriptions, list changes) is not offered."""
    gateway = everything_gateway(procs, tmp_path, upstream, flags=("--stateless",))
    server, token = gateway.server, gateway.token
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, _message: str | None) -> None:
        seen.append((progress, total))

    async def scenario():
        async with connected(server, token) as client:
            tools = await client.list_tools()
            echo = await client.call_tool("echo", {"message": "stateless"})
            total = await client.call_tool("get-sum", {"a": 2, "b": 40})
            document = await client.read_resource(DOCUMENT)
            prompt = await client.get_prompt("args-prompt", {"city": "Lisbon"})
            long = await client.call_tool("trigger-long-running-operation", {"duration": 0.6, "steps": 3},
                                          progress_callback=on_progress)
            # Answered by the gateway: the shared session's level is not one caller's to set.
            await client.set_logging_level("debug")
            try:
                await client.subscribe_resource(DOCUMENT)
                refused = None
            except MCPError as error:
                refused = error
            return client.server_info, client.server_capabilities, tools, echo, total, document, prompt, long, refused

    info, capabilities, tools, echo, total, document, prompt, long, refused = run_async(scenario())
    assert info.name == "mcp-servers/everything", info
    # server-everything offers subscriptions and list changes; the shared session could deliver
    # neither, so the gateway does not offer them.
    assert not capabilities.resources.subscribe and not capabilities.resources.list_changed, capabilities
    assert not capabilities.tools.list_changed and not capabilities.prompts.list_changed, capabilities
    assert capabilities.logging is not None, capabilities
    assert refused is not None and refused.code == -32601, refused
    assert "without --stateless" in refused.message, refused.message
    assert {"echo", "get-sum"} <= {tool.name for tool in tools.tools}
    assert text_of(echo) == "Echo: stateless"
    assert text_of(total) == "The sum of 2 and 40 is 42."
    assert document.contents[0].text == (EVERYTHING_DIR / "dist/docs/features.md").read_text()
    assert prompt.messages[0].content.text == "What's weather in Lisbon?"
    assert text_of(long).startswith("Long running operation completed."), text_of(long)
    if upstream == "http":
        # An HTTP upstream's event stream passes as it comes: the progress, then the answer.
        assert seen == [(1, 3), (2, 3), (3, 3)], seen
    started = "started the shared upstream command" if upstream == "stdio" else "opened the shared session"
    gateway.serve.wait_for_log(started)
    logs = gateway.serve.logs()
    if upstream == "stdio":
        assert logs.count("started the shared upstream command") == 1, logs
    else:
        assert logs.count("opened the shared session") == 1, logs
    assert_no_secret(logs, token)


def test_gateway_passes_tasks_in_the_callers_own_session(everything):
    """Stateful, tasks (2025-11-25, SEP-1686) pass both ways as they are: server-everything's
    task-only tool answers with a task, and tasks/list, tasks/get and tasks/result reach it in
    the caller's session. Another caller's session (its own child, or upstream session) has none."""
    _, other_token = dev_token(everything.server)

    async def post(http, token: str, message: dict, session: str | None = None) -> tuple[str | None, dict]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2025-11-25"}
        if session:
            headers["Mcp-Session-Id"] = session
        response = await http.post(everything.server, json=message, headers=headers, timeout=30)
        assert response.status_code in (200, 202), response.text
        data = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        body = data[-1] if data else response.text
        return response.headers.get("mcp-session-id"), json.loads(body) if body.strip() else {}

    async def open_session(http, token: str) -> tuple[str, dict]:
        session, init = await post(http, token, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}})
        await post(http, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        return session, init

    async def scenario():
        async with httpx2.AsyncClient() as http:
            session, init = await open_session(http, everything.token)
            _, call = await post(http, everything.token, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "simulate-research-query", "arguments": {"topic": "gateways"}, "task": {"ttl": 60000}}},
                session)
            task = call["result"]["task"]["taskId"]
            _, listed = await post(http, everything.token, {"jsonrpc": "2.0", "id": 2, "method": "tasks/list"},
                                   session)
            _, status = await post(http, everything.token, {"jsonrpc": "2.0", "id": 3, "method": "tasks/get",
                                                            "params": {"taskId": task}}, session)
            # tasks/result waits for the task to finish (its four stages take a few seconds).
            _, result = await post(http, everything.token, {"jsonrpc": "2.0", "id": 4, "method": "tasks/result",
                                                            "params": {"taskId": task}}, session)
            other_session, _ = await open_session(http, other_token)
            _, others = await post(http, other_token, {"jsonrpc": "2.0", "id": 5, "method": "tasks/list"},
                                   other_session)
            return init, task, listed, status, result, others

    init, task, listed, status, result, others = run_async(scenario())
    assert init["result"]["capabilities"]["tasks"]["requests"] == {"tools": {"call": {}}}, init
    assert [each["taskId"] for each in listed["result"]["tasks"]] == [task], listed
    assert status["result"]["taskId"] == task and status["result"]["status"] in ("working", "completed"), status
    assert result["result"]["content"][0]["text"].startswith("# Research Report: gateways"), result
    assert others["result"]["tasks"] == [], others


@pytest.mark.parametrize("upstream", ["stdio", "http"])
def test_stateless_gateway_keeps_one_callers_tasks_from_another(procs, tmp_path, upstream):
    """server-everything runs tasks (2025-11-25, SEP-1686) and keeps them per session: behind a
    `--stateless` gateway that session is everyone's, so `tasks/list` and `tasks/result` would
    hand one caller's task to another. The gateway offers no tasks there: the capability is left
    out, `tasks/*` are refused, and a task-augmented call is sent on as a plain one (what a
    receiver without the capability does), so the task-only tool refuses it and no task is made."""
    gateway = everything_gateway(procs, tmp_path, upstream, flags=("--stateless",))
    _, other_token = dev_token(gateway.server)

    async def post(http, token: str, message: dict) -> dict:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        response = await http.post(gateway.server, json=message, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        data = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        return json.loads(data[-1] if data else response.text)

    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}}
    research = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "simulate-research-query", "arguments": {"topic": "gateways"}, "task": {"ttl": 60000}}}

    async def scenario():
        async with httpx2.AsyncClient() as http:
            init = await post(http, gateway.token, initialize)
            call = await post(http, gateway.token, research)
            listed = await post(http, other_token, {"jsonrpc": "2.0", "id": 2, "method": "tasks/list"})
            fetched = await post(http, other_token, {"jsonrpc": "2.0", "id": 3, "method": "tasks/result",
                                                     "params": {"taskId": "any"}})
            return init, call, listed, fetched

    init, call, listed, fetched = run_async(scenario())
    assert "tasks" not in init["result"]["capabilities"], init
    # Sent on without its task, the call is the tool's own refusal, not a task of the session's.
    assert "task" not in call.get("result", {}), call
    assert "error" in call or call["result"].get("isError"), call
    for refused in (listed, fetched):
        assert refused["error"]["code"] == -32601, refused
        assert "without --stateless" in refused["error"]["message"], refused


@pytest.mark.parametrize("upstream", ["stdio", "http"])
def test_stateless_gateway_passes_a_cancellation_for_the_callers_own_request_only(procs, tmp_path, upstream):
    """With `--stateless`, every caller's requests share one upstream session under the gateway's
    ids (counting from 1). A client's `notifications/cancelled` reaches its own request there, and
    server-everything (the TypeScript SDK) then sends no answer for it; another caller naming the
    same id, or the gateway's ids, reaches nothing."""
    gateway = everything_gateway(procs, tmp_path, upstream, flags=("--stateless", "--upstream-timeout", "4"))
    _, other_token = dev_token(gateway.server)

    def long_call(request_id: str) -> dict:
        return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation", "arguments": {"duration": 2, "steps": 2}}}

    def cancel(request_id) -> dict:
        return {"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": request_id, "reason": "interop"}}

    async def post(http, token: str, message: dict, timeout: float = 15):
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        return await http.post(gateway.server, json=message, headers=headers, timeout=timeout)

    async def scenario():
        async with httpx2.AsyncClient() as http:
            first = asyncio.create_task(post(http, gateway.token, long_call("long-1")))
            await asyncio.sleep(0.5)
            others = [(await post(http, other_token, cancel(request_id))).status_code
                      for request_id in ("long-1", 1, 2, 3)]
            first = await first
            second = asyncio.create_task(post(http, gateway.token, long_call("long-2"), timeout=8))
            await asyncio.sleep(0.5)
            own = (await post(http, gateway.token, cancel("long-2"))).status_code
            try:
                second = await second
            except httpx2.ReadTimeout:
                second = None
            return others, first, own, second

    others, first, own, second = run_async(scenario())
    assert others == [202, 202, 202, 202], others
    assert first.status_code == 200, first.text
    assert "Long running operation completed." in first.text, first.text
    assert own == 202
    if upstream == "http":
        # The upstream's event stream stays open without an answer: the client gives up reading.
        assert second is None, second.text
    else:
        # The shared child never answers: past --upstream-timeout the gateway answers 504.
        assert second is not None and second.status_code == 504, second and second.text
        assert "Long running operation completed." not in second.text, second.text
    logs = gateway.serve.logs()
    assert_no_secret(logs, gateway.token)
    assert_no_secret(logs, other_token)
