#!/usr/bin/env python3
"""The client under test of the MCP conformance suite (`@modelcontextprotocol/conformance client
--command "python3 driver.py"`): runs `scalekit-mcp` against the scenario's server as a user
would: `tools` or `call <tool>` for a scenario without authorization; `login`, `tools --login`
and `call test-tool --login` for `auth/*`, playing the browser for every authorization URL they
print.

The suite appends the server URL to the command and names the scenario in
MCP_CONFORMANCE_SCENARIO; credentials a scenario hands out (client id, secret, private key) are
in MCP_CONFORMANCE_CONTEXT (JSON). SCALEKIT_MCP_BIN is the binary under test. Each run gets its
own temporary HOME and config directory, with file storage (no keyring), removed afterwards.
Exits with the first failing command's exit status, else 0.

Standard library only: it must share no code with the client it drives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

# The conformance suite's authorization servers redirect straight back (no login form): a
# browser is one GET of the authorization URL, then one GET of the loopback redirect it answers.
CIMD_URL = "https://conformance-test.local/client-metadata.json"


# The scenarios without authorization, and the command a user would run for each. `initialize`
# grades the handshake only, so listing the tools is enough; each of the others grades a call of
# the one tool its server offers (`add_numbers` adds two numbers; the other two take no arguments).
WITHOUT_AUTHORIZATION: dict[str, list[str]] = {
    "initialize": ["tools"],
    "tools_call": ["call", "add_numbers", "a=2", "b=3"],
    "elicitation-sep1034-client-defaults": ["call", "test_client_elicitation_defaults"],
    "sse-retry": ["call", "test_reconnection"],
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


def play_browser(url: str) -> None:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(url, timeout=20)
        log(f"browser: {url.split('?')[0]} did not redirect")
        return
    except urllib.error.HTTPError as err:
        location = err.headers.get("location")
        if err.code not in (301, 302, 303, 307, 308) or not location:
            log(f"browser: {url.split('?')[0]} answered {err.code}")
            return
    try:
        with opener.open(location, timeout=20) as page:
            log(f"browser: redirected to the client's listener → {page.status}")
    except urllib.error.HTTPError as err:
        log(f"browser: the client's listener answered {err.code}")


def log(message: str) -> None:
    print(f"driver: {message}", file=sys.stderr, flush=True)


def run(args: list[str], env: dict[str, str]) -> int:
    """Runs the binary; every authorization URL it prints on stderr is visited."""
    log("scalekit-mcp " + " ".join(args))
    proc = subprocess.Popen(
        [os.environ["SCALEKIT_MCP_BIN"], *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            candidate = line.strip()
            if candidate.startswith("http") and "response_type=code" in candidate:
                threading.Thread(target=play_browser, args=(candidate,), daemon=True).start()

    # Not communicate(): it would read stderr too, and the watcher would miss the URL.
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    proc.wait(timeout=60)
    watcher.join(timeout=5)
    sys.stdout.write(stdout)
    log(f"exit {proc.returncode}")
    return proc.returncode


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="scalekit-mcp-conformance-"))
    try:
        return drive(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def drive(home: Path) -> int:
    server = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SCALEKIT_MCP_") and key not in ("SK_CLIENT_SECRET", "SK_CLIENT_ID")
    }
    env.update(
        SCALEKIT_MCP_BIN=os.environ["SCALEKIT_MCP_BIN"],
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        SCALEKIT_MCP_HOME=str(home / "scalekit-mcp"),
        SCALEKIT_MCP_STORAGE="file",
        NO_COLOR="1",
    )
    if scenario in WITHOUT_AUTHORIZATION:
        return run([*WITHOUT_AUTHORIZATION[scenario], "--server", server, "--no-login"], env)

    login = ["login", server, "--no-browser"]
    if scenario.startswith("auth/client-credentials-"):
        login += ["--client-credentials", "--client-id", context["client_id"]]
        if "private_key_pem" in context:
            key = home / "client-key.pem"
            key.write_text(context["private_key_pem"])
            key.chmod(0o600)
            login += ["--client-assertion-key", str(key)]
        else:
            env["SK_CLIENT_SECRET"] = context["client_secret"]
    elif scenario == "auth/pre-registration":
        login += ["--client-id", context["client_id"]]
        env["SK_CLIENT_SECRET"] = context["client_secret"]
    elif scenario == "auth/basic-cimd":
        login += ["--client-metadata-url", CIMD_URL]

    connection = ["--server", server, "--login", "--no-browser"]
    for args in (login, ["tools", *connection], ["call", "test-tool", *connection]):
        code = run(args, env)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
