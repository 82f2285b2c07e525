"""Case: the official Python SDK client on sessions that sleep (`--session-sleep-after`, issue 22).

A session idle for the sleep delay, with no stream open, gives up its worker; the client must not
notice. The SDK (legacy mode: an `initialize` handshake and a session, as 2025-revision clients use)
calls tools, lists them and asks who it is, with idle gaps four times the delay in between, on one
session. It holds a GET stream open while connected, so its session stays awake all along (the
README says so: sleeping is for the sessions of clients that went away); when it closes, the
session ends with its DELETE. Waking a session is tested in Rust (tests/it/sleeping_sessions.rs)
and, through Redis, in test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import time

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from support import BIN, free_port, scrubbed_env
from test_scale_out import ISSUER, jwks_url, mint, sessions_held  # noqa: F401 (jwks_url is a fixture)

SLEEP_AFTER = 0.5


def test_the_python_sdk_does_not_notice_its_session_sleeping(procs, tmp_path, jwks_url):
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    home = tmp_path / "home"
    home.mkdir()
    serve = procs("serve", [
        BIN, "serve", "--port", str(port), "--public-url", url.rstrip("/"), "--issuer", ISSUER,
        "--jwks-url", jwks_url, "--audience", url, "--session-sleep-after", f"{int(SLEEP_AFTER * 1000)}ms",
        "--metrics-addr", f"127.0.0.1:{metrics_port}"], scrubbed_env(home), cwd=home)
    serve.wait_for_http(f"{url}ready")
    token = mint("sleepy-sdk-user", url)
    seen_asleep: list[int] = []

    async def idle():
        await asyncio.sleep(SLEEP_AFTER * 4)
        seen_asleep.append(sessions_held(metrics)[1])

    async def scenario():
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode="legacy") as client:
                texts = [(await client.call_tool("greet_user", {"name": "Ada"})).content[0].text]
                await idle()
                names = [tool.name for tool in (await client.list_tools()).tools]
                await idle()
                texts.append((await client.call_tool("greet_user", {"name": "Grace"})).content[0].text)
                await idle()
                whoami = (await client.call_tool("whoami", {})).content[0].text
                return texts, names, whoami

    texts, names, whoami = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert texts == ["Hi Ada, welcome to Scalekit!", "Hi Grace, welcome to Scalekit!"]
    assert names == ["greet_user", "whoami"]
    assert "sleepy-sdk-user" in whoami, whoami
    log = serve.err_path.read_text(errors="replace")
    assert "status=404" not in log and "status=5" not in log, serve.logs()
    assert seen_asleep == [0, 0, 0], "a connected client's session (its GET stream open) slept"
    # The SDK ends its session when it closes.
    deadline = time.monotonic() + 10
    while sessions_held(metrics)[0] != 0:
        assert time.monotonic() < deadline, sessions_held(metrics)
        time.sleep(0.1)
