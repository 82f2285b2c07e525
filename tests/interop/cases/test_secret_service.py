"""Case 4: the real Secret Service. gnome-keyring runs headless under `dbus-run-session` with an
isolated HOME and XDG_RUNTIME_DIR (peers/secret-service-session.sh); `login` (no
--insecure-storage) keeps its tokens there; `secret-tool` — libsecret, not our code — finds the
entries under the attributes keyring-core's Secret Service store uses (`service`, `username`);
no token is in any file under that HOME; a fresh process reads the token back.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import (
    PEERS,
    Cli,
    assert_no_secret,
    browser_login,
    files_containing,
    jwt_claims,
    run,
    scrubbed_env,
    start_serve,
    which,
)

SERVICE = "scalekit-mcp"


@dataclass
class SecretService:
    home: Path
    env: dict

    def lookup(self, account: str) -> subprocess.CompletedProcess:
        """`secret-tool lookup service scalekit-mcp username <account>`; the secret is on stdout."""
        return subprocess.run(
            [which("secret-tool"), "lookup", "service", SERVICE, "username", account],
            env=self.env, capture_output=True, text=True, timeout=30,
        )


@pytest.fixture
def secret_service(tmp_path):
    home = tmp_path / "keyring-home"
    runtime = home / "run"
    runtime.mkdir(parents=True)
    runtime.chmod(0o700)
    env = scrubbed_env(home, XDG_RUNTIME_DIR=str(runtime))
    env.pop("DBUS_SESSION_BUS_ADDRESS")
    session = subprocess.Popen(
        [which("dbus-run-session"), "--", "bash", str(PEERS / "secret-service-session.sh")],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    session.stdin.write("interop-keyring-password\n")
    session.stdin.flush()
    line = session.stdout.readline().strip()
    if not line.startswith("ready "):
        session.kill()
        pytest.fail(f"the Secret Service did not start: {line!r} {session.stderr.read()}", pytrace=False)
    env["DBUS_SESSION_BUS_ADDRESS"] = line.removeprefix("ready ")
    yield SecretService(home, env)
    session.stdin.close()  # ends `cat`, so dbus-run-session stops the bus and gnome-keyring
    try:
        session.wait(timeout=15)
    except subprocess.TimeoutExpired:
        session.kill()
        session.wait()


def logged_in(procs, tmp_path, secret_service) -> tuple[Cli, str, str, str]:
    _, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve"])
    cli = Cli(secret_service.home, secret_service.env)
    code, out, err, _, _ = browser_login(cli, server, insecure=False)
    assert code == 0, f"{out}\n{err}"
    assert f"Logged in to {server} as dev-user" in out, out
    assert "stored in the OS keyring" in out, out
    return cli, server, out, err


def test_login_keeps_its_tokens_in_gnome_keyring(procs, tmp_path, secret_service):
    cli, server, out, err = logged_in(procs, tmp_path, secret_service)

    access = secret_service.lookup(f"access-token:{server}")
    assert access.returncode == 0, f"secret-tool found no access token: {access.stderr}"
    token = access.stdout.strip()
    assert jwt_claims(token)["sub"] == "dev-user"
    refresh = secret_service.lookup(f"refresh-token:{server}")
    assert refresh.returncode == 0 and refresh.stdout.strip(), "the refresh token is an entry of its own"
    refresh_token = refresh.stdout.strip()

    # Nothing under that HOME holds a token in the clear: not state.json, not a credentials
    # file (there is none), and not gnome-keyring's own (encrypted) keyring files.
    assert not (secret_service.home / ".scalekit-mcp/credentials.json").exists()
    state = json.loads((secret_service.home / ".scalekit-mcp/state.json").read_text())
    assert state["servers"][server]["storage"] == "keyring", state
    assert files_containing(secret_service.home, token, refresh_token) == []
    assert (secret_service.home / ".local/share/keyrings/login.keyring").exists()
    assert_no_secret(out + err, token, refresh_token)

    # A fresh process reads it back through the Secret Service.
    read_back = cli("token").ok()
    assert read_back.out.strip() == token
    status = json.loads(cli("status", "--json").ok().out)["servers"][0]
    assert status["storage"] == "keyring" and status["refreshable"] is True, status
    assert_no_secret(cli("status").ok().both, token, refresh_token)

    # logout deletes both entries from the keyring.
    assert f"Logged out of {server}" in cli("logout").ok().out
    assert secret_service.lookup(f"access-token:{server}").returncode != 0
    assert secret_service.lookup(f"refresh-token:{server}").returncode != 0


def test_without_a_reachable_keyring_login_explains_the_choices(procs, tmp_path, home):
    """The same login with no session bus: no silent plaintext fallback (DESIGN.md)."""
    _, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve"])
    result = run([os.environ["SCALEKIT_MCP_BIN"], "login", server, "--no-browser"], scrubbed_env(home), timeout=60)
    assert result.code == 2, result
    assert "no OS keyring is reachable" in result.err and "--insecure-storage" in result.err, result.err
    assert not (home / ".scalekit-mcp/credentials.json").exists()


def test_call_reads_the_token_from_gnome_keyring(procs, tmp_path, secret_service):
    cli, server, _, _ = logged_in(procs, tmp_path, secret_service)
    cli.require("call")
    called = cli("call", "greet_user", "name=Keyring").ok()
    assert called.out.strip() == "Hi Keyring, welcome to Scalekit!", called.both
    token = secret_service.lookup(f"access-token:{server}").stdout.strip()
    assert_no_secret(called.both, token)
