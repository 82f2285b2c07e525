"""The suite's "person at a browser": follows an authorization URL over HTTP, submits the
authorization server's login and consent forms, and stops at the redirect to a loopback
listener, which it then visits (as a browser would) so the waiting client gets its code.

Only the standard library: it must not share code or assumptions with any client under test.
"""

from __future__ import annotations

import html
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102
        return None


@dataclass
class Page:
    status: int
    url: str
    headers: dict
    body: str

    @property
    def location(self) -> str | None:
        value = self.headers.get("location")
        return urllib.parse.urljoin(self.url, value) if value else None


@dataclass
class Browser:
    """A cookie-keeping client that does not follow redirects on its own."""

    login: str = "interop-user"
    password: str = "any-password"
    trail: list[str] = field(default_factory=list)
    callback_url: str | None = None

    def __post_init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect
        )

    def request(self, url: str, form: dict | None = None) -> Page:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if form is not None else "GET")
        self.trail.append(f"{req.get_method()} {url.split('?')[0]}")
        try:
            with self.opener.open(req, timeout=20) as response:
                return Page(response.status, url, _lower(response.headers), response.read().decode())
        except urllib.error.HTTPError as err:
            return Page(err.code, url, _lower(err.headers), err.read().decode(errors="replace"))

    def authorize(self, url: str, max_steps: int = 12, visit_callback: bool = True) -> Page:
        """Follows `url` through the login and consent forms until a redirect leaves the
        authorization server for the client's callback; visits that callback (as a browser would)
        and returns its page, or with `visit_callback=False` returns the redirect itself."""
        origin = _origin(url)
        page = self.request(url)
        for _ in range(max_steps):
            if page.status in (301, 302, 303, 307, 308):
                target = page.location
                if _origin(target) != origin:
                    # The redirect to the client's listener: what a browser does next.
                    self.callback_url = target
                    return self.request(target) if visit_callback else page
                page = self.request(target)
                continue
            if page.status == 200 and "<form" in page.body:
                action, fields = _form(page)
                if "login" in fields or 'name="login"' in page.body:
                    fields["login"] = self.login
                    fields["password"] = self.password
                page = self.request(action, fields)
                continue
            raise AssertionError(
                f"the authorization server answered {page.status} at {page.url}:\n"
                f"{_text(page.body)[:800]}\ntrail: {self.trail}"
            )
        raise AssertionError(f"no redirect to the client after {max_steps} steps: {self.trail}")


def _lower(headers) -> dict:
    return {key.lower(): value for key, value in headers.items()}


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _form(page: Page) -> tuple[str, dict]:
    """The first form's absolute action and its named inputs' values."""
    form = re.search(r"<form([^>]*)>(.*?)</form>", page.body, re.S | re.I)
    assert form, f"no form at {page.url}"
    action = re.search(r'action="([^"]*)"', form.group(1))
    fields = {}
    for tag in re.findall(r"<input[^>]*>", form.group(2), re.I):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    target = html.unescape(action.group(1)) if action else page.url
    return urllib.parse.urljoin(page.url, target), fields


def _text(body: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()
