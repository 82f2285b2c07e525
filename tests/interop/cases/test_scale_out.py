"""Case: three `serve` replicas share their sessions and rate limits on a real redis-server,
behind a real nginx doing plain round-robin (no sticky sessions), as README "Running several
instances" describes (issue 20).

- The official Python SDK client initializes a session through nginx and makes 30 tool calls:
  all three replicas serve some of them, none gets 404.
- `kill -9` of the replica that opened the session: the session goes on through the other two.
- An event stream cut after its first event resumes with Last-Event-ID on another replica, which
  replays the rest (the tool's answer) from Redis.
- A caller limited to 10/min (burst 10) gets exactly 10 requests through three replicas, then 429.
- Redis stopped: a new session gets 503 with Retry-After and /ready says why; a session held by
  a replica keeps answering there, its rate limit failing open; the failures are counted in
  scalekit_mcp_store_errors_total; Redis back on the same port: new sessions work, no restart.
- A gateway (`serve -- <command>`), whose sessions cannot move, behind nginx with `ip_hash;`
  (each client to one replica), as the README says to run it.
- `rediss://`: Redis over TLS with a private CA, trusted through SSL_CERT_FILE (a replica that
  does not trust it is not ready, and says why).
- Another caller's token with a valid session id gets 404 from every replica; the session's
  record expires with the idle timeout; DELETE on any replica (one that does not hold the session
  too) ends it on all of them.

Tokens are minted here with a fixture key, whose JWKS a small HTTP server in the test serves
(a stand-in for the authorization server, which is not what this case is about).
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx2
import jwt
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from support import BIN, Proc, free_port, scrubbed_env, which

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ISSUER = "https://issuer.scale-out.test"
# Redis runs with a password, so the tests can check that it never reaches a log line or /ready.
REDIS_PASSWORD = "redis-secret-" + "7f3a9c"


@dataclass
class Stack:
    """Three replicas behind nginx, on one Redis."""

    url: str  # nginx: the MCP URL clients use
    replicas: list[Proc]
    replica_urls: list[str]
    redis: Proc
    redis_port: int
    redis_args: list[str]
    audience: str
    metrics_urls: list[str]

    def token(self, subject: str) -> str:
        return mint(subject, self.audience)

    def lines_of(self, replica: Proc, subject: str) -> list[str]:
        """The replica's request lines for `subject`'s POSTs answered 200."""
        text = replica.err_path.read_text(errors="replace")
        return [line for line in text.splitlines()
                if f'subject="{subject}"' in line and "method=POST" in line and "status=200" in line]

    def wait_for_lines(self, subject: str, count: int, timeout: float = 30) -> None:
        """Until the replicas have logged `count` answered POSTs of `subject` between them."""
        deadline = time.monotonic() + timeout
        while sum(len(self.lines_of(r, subject)) for r in self.replicas) < count:
            assert time.monotonic() < deadline, [r.logs() for r in self.replicas]
            time.sleep(0.05)

    def calls_of(self, replica: Proc, subject: str) -> int:
        """The tool calls the replica answered for `subject` with outcome ok (its audit lines;
        the SDK closes each event stream as soon as it has its answer, which is still ok)."""
        text = replica.err_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines()
                   if " tool call " in line and f'subject="{subject}"' in line
                   and 'outcome="ok"' in line)


def mint(subject: str, audience: str, scopes: str = "mcp:tools") -> str:
    """An RS256 access token signed with the fixture key `key-a`."""
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "aud": audience, "iat": now, "exp": now + 600,
              "scope": scopes}
    key = (FIXTURES / "rsa-a.pem").read_text()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "key-a"})


@pytest.fixture
def jwks_url():
    """The fixture JWKS, served on a free loopback port for the test's duration."""
    body = (FIXTURES / "jwks-a.json").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


def resp(*args: str) -> bytes:
    return (f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode()


def redis_command(port: int, *args: str) -> bytes:
    """One Redis command over RESP, after AUTH; the raw reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(resp("AUTH", REDIS_PASSWORD))
        assert sock.recv(64).startswith(b"+OK")
        sock.sendall(resp(*args))
        return sock.recv(4096)


def redis_answers(port: int) -> bool:
    try:
        return redis_command(port, "PING").startswith(b"+PONG")
    except (OSError, AssertionError):
        return False


def start_redis(procs, tmp_path: Path, port: int, name: str = "redis") -> tuple[Proc, list[str]]:
    data = tmp_path / name
    data.mkdir(exist_ok=True)
    argv = [which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(data), "--requirepass", REDIS_PASSWORD]
    proc = procs(name, argv)
    proc.wait_for(lambda: redis_answers(port), "redis PONG", timeout=30)
    return proc, argv


def nginx_binary() -> str:
    """Debian installs nginx in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        pytest.fail("nginx is not installed (tests/interop/run installs it with apt-get)",
                    pytrace=False)
    return found


def start_nginx(procs, tmp_path: Path, port: int, upstreams: list[int], balance: str = "") -> Proc:
    """nginx on `port`, round-robin over `upstreams` (or `balance`, a directive such as
    `ip_hash;`), its config and temp files in tmp_path."""
    root = tmp_path / "nginx"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;" for p in upstreams)
    config = f"""
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream replicas {{
    {balance}
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_read_timeout 60s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""
    path = root / "nginx.conf"
    path.write_text(config)
    proc = procs("nginx", [nginx_binary(), "-c", str(path), "-p", str(root)])
    proc.wait_for(lambda: _port_open(port), "nginx listening", timeout=30)
    return proc


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_stack(procs, tmp_path: Path, jwks: str, extra: list[str] | None = None) -> Stack:
    redis_port = free_port()
    redis, redis_args = start_redis(procs, tmp_path, redis_port)
    nginx_port = free_port()
    audience = f"http://127.0.0.1:{nginx_port}/"
    ports = [free_port() for _ in range(3)]
    metrics_ports = [free_port() for _ in range(3)]
    replicas = []
    for index, (port, metrics_port) in enumerate(zip(ports, metrics_ports)):
        home = tmp_path / f"replica-{index}-home"
        home.mkdir()
        argv = [BIN, "serve", "--port", str(port), "--public-url", f"http://127.0.0.1:{nginx_port}",
                "--issuer", ISSUER, "--jwks-url", jwks, "--audience", audience,
                "--allowed-host", f"127.0.0.1:{port}",
                "--metrics-addr", f"127.0.0.1:{metrics_port}",
                "--session-store", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}",
                *(extra or [])]
        replicas.append(procs(f"replica-{index}", argv, scrubbed_env(home), cwd=home))
    for replica, port in zip(replicas, ports):
        replica.wait_for(lambda port=port: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200,
                         "ready (keys loaded, Redis reachable)")
    start_nginx(procs, tmp_path, nginx_port, ports)
    return Stack(audience, replicas, [f"http://127.0.0.1:{p}/" for p in ports], redis,
                 redis_port, redis_args, audience,
                 [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports])


def http_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
    except OSError:
        return 0, {}


def post(url: str, token: str, message: dict, session: str | None = None) -> tuple[int, dict, str]:
    """One JSON-RPC POST: (status, headers, body)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18"}
    if session:
        headers["Mcp-Session-Id"] = session
    request = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "scale-out-test", "version": "1"}}}


def open_session(url: str, token: str) -> str:
    status, headers, body = post(url, token, INITIALIZE)
    assert status == 200, (status, body)
    session = headers.get("mcp-session-id") or headers.get("Mcp-Session-Id")
    assert session, headers
    status, _, body = post(url, token, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                           session)
    assert status == 202, (status, body)
    return session


def greet(url: str, token: str, session: str, name: str) -> tuple[int, str]:
    status, _, body = post(url, token, {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                        "params": {"name": "greet_user", "arguments": {"name": name}}},
                           session)
    return status, body


def first_line_time(replica: Proc, subject: str) -> str:
    """The timestamp of the replica's first request line for `subject` ("~" if none: sorts last)."""
    for line in replica.err_path.read_text(errors="replace").splitlines():
        if f'subject="{subject}"' in line:
            match = re.match(r"^\S+", line)
            return match.group(0) if match else "~"
    return "~"


def test_a_session_moves_between_replicas_and_survives_kill_9(procs, tmp_path, jwks_url):
    stack = start_stack(procs, tmp_path, jwks_url)
    token = stack.token("scale-out-user")

    async def scenario():
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            # mode="legacy": the initialize handshake and a session, as clients of the 2025
            # protocol revisions use (a 2026-07-28 client sends stateless requests instead,
            # which any replica answers without a session).
            transport = streamable_http_client(stack.url, http_client=http)
            async with Client(transport, mode="legacy") as client:
                assert client.protocol_version.startswith("2025-"), client.protocol_version
                first = [await client.call_tool("greet_user", {"name": f"Ada {n}"}) for n in range(30)]
                # The replica that opened the session: the first to log this caller.
                opener = min(stack.replicas, key=lambda r: first_line_time(r, "scale-out-user"))
                # An audit line is written once its answer has gone: allow it a moment.
                deadline = time.monotonic() + 10
                while True:
                    served = [stack.calls_of(r, "scale-out-user") for r in stack.replicas]
                    if sum(served) >= 30 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                opener.proc.kill()  # SIGKILL: no goodbye to Redis, nginx or the client
                opener.proc.wait()
                later = [await client.call_tool("greet_user", {"name": f"Grace {n}"})
                         for n in range(10)]
                return first, later, served

    first, later, served = asyncio.run(asyncio.wait_for(scenario(), 120))
    texts = [result.content[0].text for result in first + later]
    assert texts[:30] == [f"Hi Ada {n}, welcome to Scalekit!" for n in range(30)]
    assert texts[30:] == [f"Hi Grace {n}, welcome to Scalekit!" for n in range(10)]
    assert all(count > 0 for count in served) and sum(served) == 30, \
        f"every replica served calls of the session: {served}"
    for replica in stack.replicas:
        assert "status=404" not in replica.err_path.read_text(errors="replace"), replica.logs()


def test_a_rate_limit_holds_across_replicas(procs, tmp_path, jwks_url):
    stack = start_stack(procs, tmp_path, jwks_url,
                        ["--rate-limit", "10/min", "--rate-limit-burst", "10"])
    token = stack.token("limited-user")
    statuses = [post(stack.url, token, INITIALIZE)[0] for _ in range(15)]
    assert statuses == [200] * 10 + [429] * 5, statuses
    stack.wait_for_lines("limited-user", 10)
    answered = [len(stack.lines_of(r, "limited-user")) for r in stack.replicas]
    assert sorted(answered) != [0, 0, 10] and sum(answered) == 10, answered
    status, headers, _ = post(stack.url, token, INITIALIZE)
    assert status == 429 and int(headers.get("Retry-After", headers.get("retry-after", "0"))) >= 1


def test_redis_down_then_back(procs, tmp_path, jwks_url):
    stack = start_stack(procs, tmp_path, jwks_url, ["--rate-limit", "3/min", "--rate-limit-burst", "3"])
    token = stack.token("outage-user")
    direct = stack.replica_urls[0]
    held = open_session(direct, token)
    assert greet(direct, token, held, "before")[0] == 200
    assert greet(direct, token, held, "over the limit")[0] == 429

    stack.redis.proc.kill()
    stack.redis.proc.wait()
    status, headers, body = post(direct, token, INITIALIZE)
    assert status == 503, (status, body)
    assert json.loads(body)["error"] == "session_store_unavailable"
    assert int(headers.get("Retry-After", headers.get("retry-after", "0"))) >= 1
    # The session held here goes on, and the rate limit fails open while Redis is away.
    status, body = greet(direct, token, held, "during")
    assert status == 200 and "Hi during" in body, (status, body)
    ready_url = f"{direct}ready"
    stack.replicas[0].wait_for(lambda: http_get(ready_url)[0] == 503, "/ready 503", timeout=20)
    reason = http_get(ready_url)[1].get("reason", "")
    assert f"Redis at redis://:***@127.0.0.1:{stack.redis_port}" in reason, reason
    assert "unreachable" in reason and REDIS_PASSWORD not in reason, reason
    stack.replicas[0].wait_for_log("Redis failed while")
    with urllib.request.urlopen(stack.metrics_urls[0], timeout=10) as response:
        metrics = response.read().decode()
    failures = re.search(r"^scalekit_mcp_store_errors_total (\d+)", metrics, re.M)
    assert failures and int(failures.group(1)) >= 2, metrics

    # Back on the same port: no replica is restarted.
    stack.redis = start_redis(procs, tmp_path, stack.redis_port, name="redis-again")[0]
    stack.replicas[0].wait_for(lambda: http_get(ready_url)[0] == 200, "/ready 200", timeout=30)
    fresh = open_session(stack.url, token)
    assert greet(stack.url, token, fresh, "after")[0] == 200
    # The Redis password reached no log line, though the URL carried it.
    for replica in stack.replicas:
        assert REDIS_PASSWORD not in replica.err_path.read_text(), replica.name


def test_another_callers_token_gets_404_on_every_replica(procs, tmp_path, jwks_url):
    stack = start_stack(procs, tmp_path, jwks_url)
    owner = stack.token("session-owner")
    session = open_session(stack.url, owner)
    for n in range(3):  # through nginx: each replica holds it afterwards
        assert greet(stack.url, owner, session, f"owner {n}")[0] == 200
    intruder = stack.token("someone-else")
    for url in stack.replica_urls:
        status, body = greet(url, intruder, session, "intruder")
        assert status == 404, (url, status, body)
        assert greet(url, owner, session, "owner again")[0] == 200, url

    # The record expires with --session-idle-timeout (5 min by default) unless used.
    ttl = redis_command(stack.redis_port, "PTTL", f"scalekit-mcp:session:{session}")
    assert ttl.startswith(b":") and 0 < int(ttl[1:]) <= 300_000, ttl

    # DELETE ends the session on every replica (the others notice within a second), also when
    # sent to a replica that does not hold the session.
    fourth_port = free_port()
    fourth_home = tmp_path / "replica-3-home"
    fourth_home.mkdir()
    fourth = procs("replica-3", [
        BIN, "serve", "--port", str(fourth_port), "--public-url", stack.url.rstrip("/"),
        "--issuer", ISSUER, "--jwks-url", jwks_url, "--audience", stack.audience,
        "--allowed-host", f"127.0.0.1:{fourth_port}",
        "--session-store", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{stack.redis_port}"],
        scrubbed_env(fourth_home), cwd=fourth_home)
    fourth.wait_for(lambda: http_get(f"http://127.0.0.1:{fourth_port}/ready")[0] == 200, "ready")
    request = urllib.request.Request(f"http://127.0.0.1:{fourth_port}/", method="DELETE", headers={
        "Authorization": f"Bearer {intruder}", "Mcp-Session-Id": session})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("another caller's DELETE was accepted")
    except urllib.error.HTTPError as refused:
        assert refused.code == 404, refused.code
    request = urllib.request.Request(f"http://127.0.0.1:{fourth_port}/", method="DELETE", headers={
        "Authorization": f"Bearer {owner}", "Mcp-Session-Id": session})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 202, 204), response.status
    assert redis_command(stack.redis_port, "EXISTS", f"scalekit-mcp:session:{session}") == b":0\r\n"
    time.sleep(1.5)
    for url in stack.replica_urls:
        status, body = greet(url, owner, session, "after delete")
        assert status == 404, (url, status, body)


def sessions_held(metrics_url: str) -> tuple[int, int]:
    """The replica's open sessions and those asleep, from its metrics."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    active = re.search(r"^scalekit_mcp_sessions_active (\d+)", metrics, re.M)
    asleep = re.search(r"^scalekit_mcp_sessions_asleep (\d+)", metrics, re.M)
    assert active and asleep, metrics
    return int(active.group(1)), int(asleep.group(1))


def test_a_session_that_slept_on_its_replica_wakes_from_its_record(procs, tmp_path, jwks_url):
    # With Redis, a session that sleeps is let go by its replica: its record wakes it, for its
    # owner only, on any replica.
    stack = start_stack(procs, tmp_path, jwks_url, ["--session-sleep-after", "300ms"])
    owner = stack.token("sleepy-owner")
    first, metrics = stack.replica_urls[0], stack.metrics_urls[0]
    session = open_session(first, owner)
    assert greet(first, owner, session, "before")[0] == 200
    assert sessions_held(metrics)[0] == 1
    stack.replicas[0].wait_for(lambda: sessions_held(metrics)[0] == 0, "the session let go",
                               timeout=20)
    assert redis_command(stack.redis_port, "EXISTS", f"scalekit-mcp:session:{session}") == b":1\r\n"

    status, body = greet(first, stack.token("someone-else"), session, "intruder")
    assert status == 404, (status, body)
    status, body = greet(first, owner, session, "after")
    assert status == 200 and "Hi after, welcome to Scalekit!" in body, (status, body)
    assert sessions_held(metrics)[0] == 1, "held again after its wake"


def sse_events(lines) -> list[dict]:
    """Server-sent events from an iterator of text lines: each a dict of its fields."""
    events, current = [], {}
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if current:
                events.append(current)
            current = {}
            continue
        name, _, value = line.partition(":")
        current[name] = (current.get(name, "") + ("\n" if name in current else "")
                         + value.removeprefix(" "))
    if current:
        events.append(current)
    return events


def test_a_cut_event_stream_resumes_on_another_replica(procs, tmp_path, jwks_url):
    stack = start_stack(procs, tmp_path, jwks_url)
    token = stack.token("resuming-user")
    first, second = (urllib.parse.urlsplit(url) for url in stack.replica_urls[:2])
    session = open_session(stack.replica_urls[0], token)
    headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": session,
               "MCP-Protocol-Version": "2025-06-18"}

    # The call's stream, read up to its first event, then cut. With a progress token the call
    # goes through rmcp's session worker, whose streams are kept for a resume (a plain call is
    # answered whole, at once, by the direct path, and its stream is not kept).
    connection = http.client.HTTPConnection(first.hostname, first.port, timeout=20)
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "greet_user", "arguments": {"name": "Resumed"},
                       "_meta": {"progressToken": "resume-9"}}}
    connection.request("POST", "/", body=json.dumps(call), headers={
        **headers, "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream"})
    response = connection.getresponse()
    assert response.status == 200 and "text/event-stream" in response.getheader("Content-Type")
    lines = []
    while (line := response.fp.readline().decode()) not in ("\r\n", "\n", ""):
        lines.append(line)
    connection.close()
    (cut_at,) = sse_events(lines)
    assert "id" in cut_at and "Hi Resumed" not in cut_at.get("data", ""), cut_at

    # The other replica replays what came after, from Redis (written in the background: a
    # client waits the stream's `retry` before it resumes; the test tries again until it is
    # there).
    deadline = time.monotonic() + 10
    while True:
        resumed = http.client.HTTPConnection(second.hostname, second.port, timeout=20)
        resumed.request("GET", "/", headers={**headers, "Accept": "text/event-stream",
                                             "Last-Event-ID": cut_at["id"]})
        answer = resumed.getresponse()
        body = answer.read().decode()
        resumed.close()
        replayed = [event for event in sse_events(body.splitlines(keepends=True))
                    if "data" in event]
        # A replay ends with what Redis has: nothing yet is an empty stream, and a client
        # resumes again from the same id (as it would after the stream's `retry`).
        if (answer.status == 200 and replayed) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status == 200, (answer.status, body)
    assert len(replayed) == 1, replayed
    message = json.loads(replayed[0]["data"])
    assert message["id"] == 9
    assert message["result"]["content"][0]["text"] == "Hi Resumed, welcome to Scalekit!"
    assert replayed[0]["id"] != cut_at["id"]
    served = stack.replicas[1].wait_for_log('method=GET path="/" status=200')
    assert 'method=GET path="/" status=200' in served and 'subject="resuming-user"' in served
    # A request's events are kept 30 s after its last one, not for the session's whole life.
    stream = cut_at["id"].rsplit("|", 1)[0]
    ttl = redis_command(stack.redis_port, "PTTL", f"scalekit-mcp:events:{stream}")
    assert ttl.startswith(b":") and 0 < int(ttl[1:]) <= 30_000, ttl


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key) PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731

    def certificate(subject, key, issuer, signing_key, ca: bool):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name("scale-out test CA"), ca_key, name("scale-out test CA"), ca_key, True)
    server = certificate(name("127.0.0.1"), server_key, ca.subject, ca_key, False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def test_rediss_with_a_private_ca(procs, tmp_path, jwks_url):
    ca, cert, key = tls_files(tmp_path)
    tls_port = free_port()
    data = tmp_path / "redis-tls"
    data.mkdir()
    redis = procs("redis-tls", [
        which("redis-server"), "--port", "0", "--tls-port", str(tls_port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(data),
        "--requirepass", REDIS_PASSWORD])
    redis.wait_for(lambda: _port_open(tls_port), "redis listening for TLS", timeout=30)

    def replica(name: str, trusts_ca: bool) -> str:
        port = free_port()
        home = tmp_path / f"{name}-home"
        home.mkdir()
        env = scrubbed_env(home)
        env.pop("SSL_CERT_FILE", None)
        if trusts_ca:
            env["SSL_CERT_FILE"] = str(ca)
        url = f"http://127.0.0.1:{port}/"
        procs(name, [BIN, "serve", "--port", str(port), "--public-url", url.rstrip("/"),
                     "--issuer", ISSUER, "--jwks-url", jwks_url, "--audience", url,
                     "--session-store", f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{tls_port}"],
              env, cwd=home)
        return url

    trusting = replica("replica-trusting", True)
    deadline = time.monotonic() + 30
    while http_get(f"{trusting}ready")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, ready = http_get(f"{trusting}ready")
    assert status == 200 and ready["redis"] == [f"rediss://:***@127.0.0.1:{tls_port}"], ready
    token = mint("tls-user", trusting)
    session = open_session(trusting, token)
    assert greet(trusting, token, session, "over TLS")[0] == 200
    assert redis_command_tls_free_check(tls_port)

    doubting = replica("replica-doubting", False)
    deadline = time.monotonic() + 30
    while http_get(f"{doubting}health")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # the keys load and Redis is probed (every 2 s) meanwhile
    status, ready = http_get(f"{doubting}ready")
    reason = ready.get("reason", "")
    assert status == 503 and f"Redis at rediss://:***@127.0.0.1:{tls_port} is unreachable" in reason, \
        (status, ready)
    assert "certificate" in reason.lower() or "issuer" in reason.lower(), reason
    assert REDIS_PASSWORD not in ready.get("reason", "")


def redis_command_tls_free_check(port: int) -> bool:
    """The TLS port does not speak plain RESP: the replica really went through TLS."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(resp("PING"))
            return not sock.recv(64).startswith(b"+PONG")
    except OSError:
        return True


def test_a_gateway_behind_nginx_with_ip_hash(procs, tmp_path, jwks_url):
    """A gateway's sessions each hold a child on one replica, so `--session-store` refuses it;
    the README's alternative is sticky routing per client at the balancer. As written there."""
    from test_gateway import EVERYTHING

    nginx_port = free_port()
    audience = f"http://127.0.0.1:{nginx_port}/"
    ports = [free_port() for _ in range(2)]
    for index, port in enumerate(ports):
        home = tmp_path / f"gateway-{index}-home"
        home.mkdir()
        gateway = procs(f"gateway-{index}", [
            BIN, "serve", "--port", str(port), "--public-url", audience.rstrip("/"),
            "--issuer", ISSUER, "--jwks-url", jwks_url, "--audience", audience, "--", *EVERYTHING],
            scrubbed_env(home), cwd=home)
        gateway.wait_for(lambda port=port: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200,
                         "ready")
    start_nginx(procs, tmp_path, nginx_port, ports, balance="ip_hash;")
    token = mint("sticky-user", audience)

    async def scenario():
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            transport = streamable_http_client(audience, http_client=http)
            async with Client(transport, mode="legacy") as client:
                return [await client.call_tool("echo", {"message": f"sticky {n}"}) for n in range(10)]

    results = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert [r.content[0].text for r in results] == [f"Echo: sticky {n}" for n in range(10)], results
