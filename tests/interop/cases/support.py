"""Helpers of the interop suite: our binary with a scrubbed environment, peers started
on 127.0.0.1 and stopped afterwards, and small HTTP helpers that share no code with the software
under test.

tests/interop/run sets SCALEKIT_MCP_BIN, INTEROP_NODE (a Node >= 22.19 binary) and
INTEROP_NODE_BIN (node_modules/.bin) before it starts pytest.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser import Browser

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent / "peers"
BIN = os.environ.get("SCALEKIT_MCP_BIN", "")
NODE = os.environ.get("INTEROP_NODE", "node")
NODE_BIN = os.environ.get("INTEROP_NODE_BIN", "")
PYTHON = sys.executable

# Variables our binary reads: never inherited from the developer's shell.
SCRUBBED = [
    "SK_ENV_URL", "SK_CLIENT_ID", "SK_CLIENT_SECRET", "EXPECTED_AUDIENCE",
    "PROTECTED_RESOURCE_METADATA", "PORT", "LOG_LEVEL", "RUST_LOG", "RESOURCE_METADATA_URL",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrubbed_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose HOME, config and keyring are `home`'s own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SCRUBBED and not key.startswith("SCALEKIT_MCP_") and not key.startswith("DBUS_")
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_RUNTIME_DIR=str(home),
        SCALEKIT_MCP_HOME=str(home / ".scalekit-mcp"),
        NO_COLOR="1",
        # No keyring unless a test starts one: a bus address that leads nowhere.
        DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/scalekit-mcp-interop-bus",
    )
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def ok(self) -> "Result":
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self

    @property
    def both(self) -> str:
        return self.out + self.err


def run(argv: list[str], env: dict, stdin: str | None = None, timeout: float = 60, cwd=None) -> Result:
    proc = subprocess.run(
        argv, env=env, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


class Cli:
    """Our binary, run with `home` as HOME and config directory."""

    def __init__(self, home: Path, env: dict | None = None):
        self.home = home
        self.env = env or scrubbed_env(home)

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60) -> Result:
        return run([BIN, *args], self.env, stdin=stdin, timeout=timeout, cwd=self.home)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [BIN, *args], env=self.env, cwd=self.home, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def has_subcommand(self, name: str) -> bool:
        return run([BIN, name, "--help"], self.env).code == 0

    def require(self, *names: str) -> None:
        """Fails (never skips) when a subcommand is missing from this build."""
        missing = [name for name in names if not self.has_subcommand(name)]
        if missing:
            pytest.fail(
                f"call/tools not built: `scalekit-mcp {' / '.join(missing)}` is missing from {BIN} "
                "(merge the call-tools branch); this case needs it",
                pytrace=False,
            )

    def credentials(self) -> dict:
        """The 0600 credentials file of --insecure-storage (read by the test, never printed)."""
        return json.loads((self.home / ".scalekit-mcp/credentials.json").read_text())

    def state_text(self) -> str:
        return (self.home / ".scalekit-mcp/state.json").read_text()


class Proc:
    """A background process with its output in files, stopped at teardown."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path, cwd=None, stdin=None):
        self.name = name
        # Kept so that a test can start the same command again (a server restart).
        self.argv, self.env, self.cwd = argv, env, cwd
        self.out_path = logs / f"{name}.out"
        self.err_path = logs / f"{name}.err"
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=stdin or subprocess.DEVNULL,
            stdout=self.out_path.open("w"), stderr=self.err_path.open("w"),
        )

    def logs(self) -> str:
        read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
        return f"--- {self.name} stdout\n{read(self.out_path)}\n--- {self.name} stderr\n{read(self.err_path)}"

    def wait_for(self, condition, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}) before {what}\n{self.logs()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no {what} within {timeout}s\n{self.logs()}", pytrace=False)
            time.sleep(0.1)

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 30) -> str:
        """Its stderr once `text` is in it `count` times. `serve` writes the lines of a busy
        worker in batches, a moment after the answers they log: wait for a line, do not expect it."""
        read = lambda: self.err_path.read_text(errors="replace")  # noqa: E731
        self.wait_for(lambda: read().count(text) >= count, f"{count} × {text!r} on stderr", timeout)
        return read()

    def wait_for_line(self, pattern: str, timeout: float = 60) -> re.Match:
        found = {}

        def check():
            # Complete lines only: a line still being written must not match a shorter `$`.
            text = self.out_path.read_text(errors="replace")
            match = re.search(pattern, text[: text.rfind("\n") + 1], re.M)
            found["m"] = match
            return match is not None

        self.wait_for(check, f"line matching {pattern!r}", timeout)
        return found["m"]

    def wait_for_http(self, url: str, timeout: float = 60) -> None:
        self.wait_for(lambda: http_status(url) == 200, f"200 from {url}", timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def procs(tmp_path, request):
    """Starts background processes; stops them all at teardown and shows their logs on failure."""
    started: list[Proc] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, argv: list[str], env: dict | None = None, cwd=None) -> Proc:
        proc = Proc(name, argv, env or scrubbed_env(tmp_path / f"{name}-home"), logs, cwd=cwd)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in started:
            sys.stderr.write(proc.logs() + "\n")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(home) -> Cli:
    return Cli(home)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def http_json(url: str, form: dict | None = None, auth: tuple[str, str] | None = None) -> tuple[int, dict]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, {"raw": body.decode(errors="replace")}


def serve_home(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


def start_serve(procs, tmp_path: Path, args: list[str], name: str = "serve",
                env_extra: dict[str, str] | None = None) -> tuple[Proc, str]:
    """Starts `scalekit-mcp serve` on a free port with the public URL on 127.0.0.1 (and
    `env_extra` in its environment); returns it and its MCP URL once /health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = serve_home(tmp_path, f"{name}-home")
    env = scrubbed_env(home, **(env_extra or {}))
    proc = procs(name, [BIN, "serve", "--port", str(port), "--public-url", url, *args], env, cwd=home)
    proc.wait_for_http(f"{url}/health")
    return proc, f"{url}/"


def start_oidc_provider(procs, resource: str, access_token_ttl: int = 300) -> str:
    """Starts the oidc-provider peer for `resource`; returns its issuer."""
    port = free_port()
    proc = procs(
        "oidc-provider",
        [NODE, str(PEERS / "oidc-provider.mjs"), "--port", str(port), "--resource", resource,
         "--access-token-ttl", str(access_token_ttl)],
        dict(os.environ, NODE_ENV="development"),
    )
    return proc.wait_for_line(r"^ready (\S+)$").group(1)


def curl_tool_call(url: str, token: str | None, tool: str, arguments: dict) -> tuple[int, str, dict | None]:
    """tools/call with curl, the way the README shows it: initialize, the session id,
    notifications/initialized, then the call. The token goes to curl on stdin (`-H @-`), never
    on its command line. Returns (HTTP status of the call, WWW-Authenticate, JSON-RPC message).

    The oidc-provider case runs `scalekit-mcp call` too
    (test_oidc_provider.py::test_call_and_tools_with_our_client); this stays as the check that a
    token from `scalekit-mcp token` works with any HTTP client.
    """
    headers = "Content-Type: application/json\nAccept: application/json, text/event-stream\n"
    if token:
        headers += f"Authorization: Bearer {token}\n"

    def post(body: dict, session: str | None) -> tuple[int, dict, str]:
        extra = f"Mcp-Session-Id: {session}\n" if session else ""
        proc = subprocess.run(
            ["curl", "-sS", "-D", "-", "-H", "@-", "--data-binary", json.dumps(body), url],
            input=headers + extra, capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        head, _, payload = proc.stdout.replace("\r\n", "\n").partition("\n\n")
        status = int(head.split()[1])
        fields = {}
        for line in head.splitlines()[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return status, fields, payload

    status, fields, payload = post(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "curl", "version": "1"}}}, None)
    if status != 200:
        return status, fields.get("www-authenticate", ""), _rpc(payload)
    session = fields.get("mcp-session-id")
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    status, fields, payload = post(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": tool, "arguments": arguments}}, session)
    return status, fields.get("www-authenticate", ""), _rpc(payload)


def _rpc(payload: str) -> dict | None:
    data = [line[5:].strip() for line in payload.splitlines() if line.startswith("data:")]
    data = [d for d in data if d.startswith("{")]
    text = data[-1] if data else payload.strip()
    try:
        return json.loads(text) if text else None
    except ValueError:
        return {"raw": text}


def tool_text(message: dict | None) -> str:
    assert message and "result" in message, f"not a tool result: {message}"
    return message["result"]["content"][0]["text"]


def jwt_claims(token: str) -> dict:
    import base64

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def assert_no_secret(text: str, *secrets_: str) -> None:
    for secret in secrets_:
        if secret:
            assert secret not in text, "a token or secret was printed"


def files_containing(root: Path, *needles: str) -> list[str]:
    """Files under `root` whose bytes contain any needle (for "no token on disk")."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(needle.encode() in data for needle in needles if needle):
                found.append(str(path.relative_to(root)))
    return found


def random_token() -> str:
    return "interop-" + secrets.token_urlsafe(24)


def node_tool(name: str) -> str:
    path = Path(NODE_BIN) / name
    assert path.exists(), f"{path} is missing: run tests/interop/run (it installs the npm peers)"
    return str(path)


def which(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed (tests/interop/run installs it)", pytrace=False)
    return path


def browser_login(cli: Cli, server: str, *extra: str, insecure: bool = True):
    """`login --no-browser` (with --insecure-storage unless `insecure` is false); the test reads
    the URL from stderr and plays the browser. Returns (exit code, stdout, stderr, URL, Browser)."""
    storage = ["--insecure-storage"] if insecure else []
    child = cli.popen("login", server, "--no-browser", "--timeout", "120s", *storage, *extra)
    try:
        seen = []
        url = None
        for line in child.stderr:
            seen.append(line)
            if line.strip().startswith("http"):
                url = line.strip()
                break
        assert url, f"no login URL on stderr: {seen}"
        rest: list[str] = []
        reader = threading.Thread(target=lambda: rest.extend(child.stderr), daemon=True)
        reader.start()
        browser = Browser(login="interop-user")
        page = browser.authorize(url)
        assert page.status == 200 and "Logged in" in page.body, page.body
        out = child.stdout.read()
        child.wait(timeout=60)
        reader.join(timeout=5)
    finally:
        # A failed step must not leave `login` waiting for its browser behind the next test.
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out, "".join(seen + rest), url, browser
