"""Case 1: a real authorization server, the npm package `oidc-provider` (peers/oidc-provider.mjs).

`serve` finds its JWKS from the issuer's metadata alone; `scalekit-mcp login` registers itself
(RFC 7591), logs in with PKCE and RFC 8707 `resource` while this test plays the browser (the
development login and consent forms submitted over HTTP); the token is used, expires, is
refreshed with a rotated refresh token, and `logout` revokes it at the server (RFC 7009).
"""

from __future__ import annotations

import json
import time

from support import (
    BIN,
    Cli,
    assert_no_secret,
    browser_login,
    curl_tool_call,
    free_port,
    http_json,
    jwt_claims,
    scrubbed_env,
    start_oidc_provider,
    tool_text,
)

# Short, so the test can wait for it to expire, yet room for a slow, busy machine between login
# and the last call made with it (the client refreshes it in its last quarter: its last 7 s).
ACCESS_TOKEN_TTL = 30


def oidc_stack(procs, tmp_path, ttl: int = ACCESS_TOKEN_TTL):
    """oidc-provider for a resource, and `serve` trusting it; returns (issuer, server URL, serve)."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/"
    issuer = start_oidc_provider(procs, resource, access_token_ttl=ttl)
    home = tmp_path / "serve-home"
    home.mkdir()
    proc = procs(
        "serve",
        [BIN, "serve", "--port", str(port), "--public-url", f"http://127.0.0.1:{port}",
         "--issuer", issuer, "--audience", resource, "--scopes-supported", "mcp:tools",
         "--leeway", "1s"],
        scrubbed_env(home),
        cwd=home,
    )
    proc.wait_for_http(f"http://127.0.0.1:{port}/ready")
    return issuer, resource, proc


def test_serve_discovers_the_jwks_from_the_issuer_metadata(procs, tmp_path):
    issuer, resource, serve = oidc_stack(procs, tmp_path)
    serve.wait_for_log(f"jwks_uri={issuer}/jwks")
    status, metadata = http_json(f"{resource}.well-known/oauth-protected-resource")
    assert status == 200
    assert metadata["resource"] == resource
    assert metadata["authorization_servers"] == [issuer]


def test_login_call_refresh_logout(procs, tmp_path, cli):
    issuer, server, serve = oidc_stack(procs, tmp_path)

    code, out, err, url, browser = browser_login(cli, server, "-v")
    assert code == 0, f"{out}\n{err}"
    # What the user reads.
    assert f"Logged in to {server} as interop-user" in out, out
    assert "scopes: mcp:tools" in out, out
    assert ", refreshable" in out, out
    assert "stored in a 0600 file" in out, out
    # The request it made: PKCE S256, the resource, offline_access with prompt=consent (OIDC §11).
    assert "code_challenge_method=S256" in url and "resource=" in url, url
    assert "offline_access" in url and "prompt=consent" in url, url
    assert "discovery: authorization server: " + issuer in err, err
    # The browser went through oidc-provider's own login and consent forms.
    assert sum("POST" in step and "/interaction/" in step for step in browser.trail) == 2, browser.trail

    secrets = cli.credentials()
    first_access = secrets[f"access-token:{server}"]
    first_refresh = secrets[f"refresh-token:{server}"]
    assert_no_secret(out + err, first_access, first_refresh)
    assert_no_secret(cli.state_text(), first_access, first_refresh)

    # An RS256 JWT access token (RFC 9068) for our resource, as check-token sees it.
    checked = cli("check-token", "--json", "--server", server, "--issuer", issuer, "--audience", server)
    report = json.loads(checked.out)
    assert report["header"]["alg"] == "RS256" and report["header"]["typ"] == "at+jwt", report
    assert report["claims"]["aud"] == server and report["claims"]["iss"] == issuer, report
    assert report["claims"]["sub"] == "interop-user" and report["claims"]["scope"] == "mcp:tools"
    assert report["valid"] is True, checked.out
    assert_no_secret(checked.both, first_access)

    status = json.loads(cli("status", "--json").ok().out)["servers"][0]
    assert status["server"] == server and status["subject"] == "interop-user", status
    assert status["refreshable"] is True and status["storage"] == "file", status

    # The stored token works against serve (with curl: any HTTP client will do).
    http, challenge, message = curl_tool_call(server, first_access, "greet_user", {"name": "Ada"})
    assert http == 200, (http, challenge, message)
    assert tool_text(message) == "Hi Ada, welcome to Scalekit!"
    http, _, message = curl_tool_call(server, first_access, "whoami", {})
    assert '"sub": "interop-user"' in tool_text(message) or '"sub":"interop-user"' in tool_text(message), message

    # Past its lifetime the token is refused, with the reason...
    time.sleep(max(0.0, jwt_claims(first_access)["exp"] - time.time()) + 2.5)
    http, challenge, _ = curl_tool_call(server, first_access, "greet_user", {"name": "Ada"})
    assert http == 401, challenge
    assert 'error="invalid_token"' in challenge and "token expired at" in challenge, challenge

    # ...and `token` refreshes it: a new access token and a rotated refresh token.
    refreshed = cli("token").ok()
    second_access = refreshed.out.strip()
    assert second_access != first_access
    assert jwt_claims(second_access)["exp"] > time.time()
    assert refreshed.err == "", refreshed.err
    second_refresh = cli.credentials()[f"refresh-token:{server}"]
    assert second_refresh != first_refresh, "oidc-provider rotates refresh tokens of public clients"
    http, _, message = curl_tool_call(server, second_access, "greet_user", {"name": "Grace"})
    assert http == 200 and tool_text(message) == "Hi Grace, welcome to Scalekit!", message

    # A second login reuses the registration (oidc-provider accepts any loopback port, RFC 8252 §7.3).
    client_id = status["client_id"]
    code, out, err, _, _ = browser_login(cli, server)
    assert code == 0 and f"Logged in to {server} as interop-user" in out, f"{out}\n{err}"
    assert json.loads(cli("status", "--json").out)["servers"][0]["client_id"] == client_id
    third_refresh = cli.credentials()[f"refresh-token:{server}"]

    # logout revokes at oidc-provider (RFC 7009): the refresh token no longer works there.
    logged_out = cli("logout").ok()
    assert f"Logged out of {server} (tokens revoked at the authorization server)" in logged_out.out
    status, body = http_json(
        f"{issuer}/token",
        {"grant_type": "refresh_token", "refresh_token": third_refresh, "client_id": client_id},
    )
    assert status == 400 and body.get("error") == "invalid_grant", (status, body)
    after = cli("token", server)
    assert after.code == 3 and f"not logged in to {server}" in after.err, after
    assert f"access-token:{server}" not in cli.credentials()


def test_call_and_tools_with_our_client(procs, tmp_path, cli):
    """The same server through `scalekit-mcp tools` and `call`, including the refresh that
    `call` does by itself once the access token has expired."""
    cli.require("call", "tools")
    issuer, server, serve = oidc_stack(procs, tmp_path)
    code, out, err, _, _ = browser_login(cli, server)
    assert code == 0, f"{out}\n{err}"

    listed = cli("tools").ok()
    assert "greet_user" in listed.out and "whoami" in listed.out, listed.out
    called = cli("call", "greet_user", "name=Ada").ok()
    assert called.out.strip() == "Hi Ada, welcome to Scalekit!", called.both

    first = cli.credentials()[f"access-token:{server}"]
    time.sleep(max(0.0, jwt_claims(first)["exp"] - time.time()) + 2.5)
    again = cli("call", "greet_user", "name=Grace").ok()
    assert again.out.strip() == "Hi Grace, welcome to Scalekit!", again.both
    assert cli.credentials()[f"access-token:{server}"] != first, "call refreshed the token"
    assert_no_secret(listed.both + called.both + again.both, first)
    cli("logout").ok()
    gone = cli("call", "greet_user", "name=Ada")
    assert gone.code == 3, gone
