"""Case 2a: the official Python MCP SDK (`mcp` 2.x) as the client of `serve`.

Its OAuthClientProvider starts from nothing but the server URL and discovers everything from our
401: the protected resource metadata (RFC 9728), the authorization server's metadata (RFC 8414 /
OpenID), registers (RFC 7591), runs the code flow with PKCE and `resource` (RFC 8707), and then
lists and calls tools — against `serve --dev` and against `serve` + oidc-provider.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import urllib.parse

import httpx2
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from browser import Browser
from support import BIN, free_port, scrubbed_env, start_serve
from test_oidc_provider import oidc_stack

REDIRECT_URI = "http://127.0.0.1:{port}/callback"


class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class BrowserHandlers:
    """The SDK's redirect and callback handlers: the test's Browser follows the authorization
    URL (through any login and consent forms) up to the redirect to the client's callback, whose
    query it hands back. Nothing listens at the callback: the code never leaves the test."""

    def __init__(self):
        self.browser = Browser(login="sdk-user")
        self.authorization_urls: list[str] = []
        self.redirect: dict[str, str] = {}

    async def redirect_handler(self, url: str) -> None:
        self.authorization_urls.append(url)
        await asyncio.to_thread(self.browser.authorize, url, visit_callback=False)
        query = urllib.parse.urlsplit(self.browser.callback_url).query
        self.redirect = dict(urllib.parse.parse_qsl(query))

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert "code" in self.redirect, f"no code in the redirect: {self.redirect}"
        return AuthorizationCodeResult(
            code=self.redirect["code"], state=self.redirect.get("state"), iss=self.redirect.get("iss")
        )


async def list_and_call(server: str) -> tuple[list[str], str, str, MemoryStorage, BrowserHandlers]:
    storage = MemoryStorage()
    handlers = BrowserHandlers()
    provider = OAuthClientProvider(
        server,
        OAuthClientMetadata(
            client_name="python-sdk-interop",
            redirect_uris=[REDIRECT_URI.format(port=free_port())],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage,
        redirect_handler=handlers.redirect_handler,
        callback_handler=handlers.callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with Client(streamable_http_client(server, http_client=http)) as client:
            tools = await client.list_tools()
            greeting = await client.call_tool("greet_user", {"name": "Ada"})
            whoami = await client.call_tool("whoami", {})
    assert greeting.is_error is False, greeting
    return (
        [tool.name for tool in tools.tools],
        greeting.content[0].text,
        whoami.content[0].text,
        storage,
        handlers,
    )


def test_the_sdk_is_2x():
    assert importlib.metadata.version("mcp").startswith("2."), importlib.metadata.version("mcp")


def test_python_sdk_against_serve_dev(procs, tmp_path):
    serve, server = start_serve(procs, tmp_path, ["--dev", "--dev-auto-approve"])
    names, greeting, whoami, storage, handlers = asyncio.run(list_and_call(server))

    assert names == ["greet_user", "whoami"]
    assert greeting == "Hi Ada, welcome to Scalekit!"
    assert '"sub": "dev-user"' in whoami or '"sub":"dev-user"' in whoami, whoami
    # It registered itself and asked for our resource, with PKCE S256.
    assert storage.client_info is not None and storage.client_info.client_id
    (url,) = handlers.authorization_urls
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert url.startswith(f"{server}dev-auth/authorize?"), url
    assert query["resource"] == server and query["code_challenge_method"] == "S256", query
    assert "mcp:tools" in query["scope"].split(), query
    assert storage.tokens.refresh_token, "offline_access was offered, so a refresh token came back"
    # The SDK checked RFC 9207 `iss` in the redirect, which serve --dev sends.
    assert handlers.redirect.get("iss") == f"{server}dev-auth", handlers.redirect
    serve.wait_for_log('status=401')
    serve.wait_for_log('subject="dev-user"')


def test_python_sdk_against_serve_with_oidc_provider(procs, tmp_path):
    issuer, server, serve = oidc_stack(procs, tmp_path, ttl=300)
    names, greeting, whoami, storage, handlers = asyncio.run(list_and_call(server))

    assert names == ["greet_user", "whoami"]
    assert greeting == "Hi Ada, welcome to Scalekit!"
    assert '"sub": "sdk-user"' in whoami or '"sub":"sdk-user"' in whoami, whoami
    (url,) = handlers.authorization_urls
    assert url.startswith(f"{issuer}/auth?"), url
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["resource"] == server, query
    # Through oidc-provider's real login and consent forms.
    assert sum("/interaction/" in step and step.startswith("POST") for step in handlers.browser.trail) == 2
    assert storage.tokens.scope == "mcp:tools", storage.tokens


def test_python_sdk_against_serve_dev_as_the_readme_starts_it(procs, tmp_path):
    """No --public-url: serve says http://localhost:PORT, and the client uses that URL."""
    port = free_port()
    home = tmp_path / "serve-home"
    home.mkdir()
    serve = procs("serve", [BIN, "serve", "--dev", "--dev-auto-approve", "--port", str(port)],
                  scrubbed_env(home), cwd=home)
    server = f"http://localhost:{port}/"
    serve.wait_for_http(f"{server}health")
    names, greeting, _, storage, handlers = asyncio.run(list_and_call(server))
    assert names == ["greet_user", "whoami"] and greeting == "Hi Ada, welcome to Scalekit!"
    (url,) = handlers.authorization_urls
    assert url.startswith(f"{server}dev-auth/authorize?"), url
