"""Drive an OpenID Connect provider's own pages over plain HTTP, as a browser would:
follow its redirects, fill in and submit its forms (login, then consent), and stop at the
redirect back to the relying party."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

import aiohttp

MAX_STEPS = 12


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value") or ""


def first_form(html: str) -> dict | None:
    parser = _Forms()
    parser.feed(html)
    return parser.forms[0] if parser.forms else None


async def sign_in_at_provider(
    session: aiohttp.ClientSession, authorization_url: str, login: str, redirect_prefix: str
) -> str:
    """The URL the provider finally redirects to (under `redirect_prefix`), code and state
    in its query. `session` keeps the provider's cookies (CookieJar(unsafe=True) for an IP)."""
    url, method, data = authorization_url, "GET", None
    for _ in range(MAX_STEPS):
        async with session.request(method, url, data=data, allow_redirects=False) as response:
            if response.status in (301, 302, 303, 307, 308):
                location = urljoin(url, response.headers["Location"])
                if location.startswith(redirect_prefix):
                    return location
                url, method, data = location, "GET", None
                continue
            html = await response.text()
            assert response.status == 200, f"{response.status} at {url}: {html[:500]}"
        form = first_form(html)
        assert form is not None, f"no form at {url}: {html[:500]}"
        fields = dict(form["fields"])
        if "login" in fields:
            fields.update(login=login, password="any password will do")
        url, method, data = urljoin(url, form["action"]), "POST", fields
    raise AssertionError(f"no redirect back after {MAX_STEPS} steps")
