"""Case 5: the official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
package-lock.json, on Node 22) grades our CLI as an OAuth client (issue 23). For each client auth
scenario the suite starts its MCP server and authorization server and runs
`conformance/driver.py <server-url>`, which runs `scalekit-mcp login` / `tools` / `call` and plays
the browser; the suite then checks what the client did (discovery order, PKCE, scopes, client
authentication, step-up, retry limits). A scenario passes only with every check SUCCESS and no
WARNING, and (except where the scenario expects the client to give up) a zero exit.

Not run: auth/cross-app-access-complete-flow (enterprise-managed authorization: token exchange +
JWT bearer grant), which the client does not support yet (README, "Conformance").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from support import node_tool, run

DRIVER = Path(__file__).resolve().parent.parent / "conformance" / "driver.py"

# Every client auth scenario of the pinned suite, except cross-app access (not supported).
SCENARIOS = [
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/client-credentials-jwt",
    "auth/client-credentials-basic",
]
NOT_SUPPORTED = ["auth/cross-app-access-complete-flow"]


def conformance(*args: str, timeout: float = 120):
    env = dict(os.environ)
    return run([node_tool("conformance"), *args], env, timeout=timeout)


def test_the_scenario_list_is_the_pinned_suites():
    """A suite upgrade that adds or renames a client auth scenario fails here, so the list above
    (and the README's table) is updated with it."""
    listed = conformance("list")
    assert listed.code == 0, listed
    text = listed.out + listed.err
    client_part = text[text.index("Client scenarios"):]
    auth = sorted(
        line.strip().removeprefix("- ").split(" ")[0]
        for line in client_part.splitlines()
        if line.strip().startswith("- auth/")
    )
    assert auth == sorted(SCENARIOS + NOT_SUPPORTED), text


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario, tmp_path):
    # The suite splits --command on spaces and appends the server URL.
    command = f"{sys.executable} {DRIVER}"
    assert " " not in sys.executable and " " not in str(DRIVER), command
    result = conformance(
        "client", "--command", command, "--scenario", scenario,
        "--timeout", "90000", "-o", str(tmp_path),
    )
    checks_files = list(tmp_path.rglob("checks.json"))
    assert checks_files, result
    checks = json.loads(checks_files[0].read_text())
    client_stderr = (checks_files[0].parent / "stderr.txt").read_text()
    bad = [f"{c['id']}: {c['status']}: {c['description']}" for c in checks
           if c["status"] in ("FAILURE", "WARNING")]
    assert not bad, "\n".join(bad) + "\n--- client stderr ---\n" + client_stderr
    assert result.code == 0, f"{result.err[-3000:]}\n--- client stderr ---\n{client_stderr}"
    assert "OVERALL: PASSED" in result.out + result.err, result
