"""Signing in to the dashboard without a browser, as a browser does: the sign-in form first
(its pre-session cookie and form token), then the form posted from the same origin."""

from __future__ import annotations

import re

import httpx

FORM_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


def sign_in(http: httpx.Client, token: str) -> httpx.Response:
    """POST the sign-in form with ``token``; the answer (303 when signed in)."""
    form = http.get("/ui/login")
    found = FORM_TOKEN.search(form.text)
    data = {"token": token, **({"login_token": found.group(1)} if found else {})}
    return http.post("/ui/login", data=data, headers={"origin": str(http.base_url).rstrip("/")})


def csrf_of(http: httpx.Client) -> str:
    """The CSRF token the signed-in session's pages carry."""
    page = http.get("/ui/me")
    if page.status_code != 200 or 'name="csrf-token"' not in page.text:
        page = http.get("/ui/overview")
    return page.text.split('name="csrf-token" content="')[1].split('"')[0]
