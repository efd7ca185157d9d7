"""Login CSRF: the sign-in form is accepted only from this site's own sign-in page.

A cross-site form posting ``token=<attacker's key>`` to ``/ui/login`` would sign the victim
into the attacker's account. Two checks refuse it:

- the browser's own word on where the form came from: ``Sec-Fetch-Site`` must be
  ``same-origin`` (or ``none``); without it the ``Origin`` header, else the ``Referer``, must
  name this host. A request with none of the three (not a browser) passes this check.
- a pre-session token: the sign-in page sets a random ``gw_login`` cookie (HttpOnly,
  SameSite=Strict, path ``/ui/login``) and puts a token derived from it in the form; the POST
  must carry both, matching. Another site can neither read the cookie nor the page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

PRESESSION_COOKIE = "gw_login"
PRESESSION_TTL_S = 3600
FORM_FIELD = "login_token"
SAME_ORIGIN_FETCH = ("same-origin", "none")


def presession(request: Request) -> str:
    """The caller's pre-session id: the one its cookie holds, else a new one."""
    found = request.cookies.get(PRESESSION_COOKIE, "")
    return found if 20 <= len(found) <= 100 else secrets.token_urlsafe(32)


def form_token(presession_id: str) -> str:
    digest = hmac.new(presession_id.encode(), b"gateway-login-form", hashlib.sha256)
    return digest.hexdigest()


def keep_presession(request: Request, response: Response, presession_id: str) -> None:
    response.set_cookie(
        PRESESSION_COOKIE,
        presession_id,
        max_age=PRESESSION_TTL_S,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def refusal(request: Request, sent_token: str) -> str | None:
    """Why this sign-in POST is refused as cross-site, or None."""
    if not _same_origin(request):
        return "Sign-in refused: the form was not sent from this site."
    cookie = request.cookies.get(PRESESSION_COOKIE, "")
    if not cookie or not hmac.compare_digest(sent_token.encode(), form_token(cookie).encode()):
        return "Sign-in form expired or not from this site: please sign in again."
    return None


def _same_origin(request: Request) -> bool:
    headers = request.headers
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in SAME_ORIGIN_FETCH
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    if origin is not None:
        return _host_of(origin) == host
    referer = headers.get("referer")
    if referer is not None:
        return _host_of(referer) == host
    return True


def _host_of(url: str) -> str | None:
    """The host[:port] of an http(s) URL, else None ("null" origins included). The scheme is
    not compared: behind a TLS proxy without --forwarded-allow-ips the gateway sees http."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None
