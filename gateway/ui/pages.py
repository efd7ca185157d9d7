"""The dashboard's routes: sign-in and sign-out, the operator pages, the user page, a team's.

Pages are rendered on the server from the analytics (overview, usage analytics) or as shells
whose script reads and changes everything through the admin API (``/v1/admin/...``,
``/v1/quota``, ``/v1/usage``, ``/v1/me/...``) with the session cookie and its CSRF token: the
dashboard has no endpoint of its own that changes anything but the session.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.batches.records import public_batch
from gateway.config.model import CAPABILITIES
from gateway.errors import Forbidden, GatewayError, TooManyFailedAttempts
from gateway.http.admin.analytics import (
    FILTERS,
    group_and_bucket,
    records_cursor,
    rollup_window,
    usage_filter,
)
from gateway.http.admin.auth import SESSION_COOKIE, admin_actor
from gateway.http.admin.team_auth import TEAM_ROLES, team_token
from gateway.http.api.files import WithBatches
from gateway.http.services import services
from gateway.proxy.auth_throttle import client_address
from gateway.secret import sha256_hex
from gateway.ui import batches, login_guard, statements, teams
from gateway.ui.orgs import orgs_context
from gateway.ui.overview import analytics_view, overview_view
from gateway.ui.render import page
from gateway.ui.session import SESSION_TTL_S, Sessions, session_of
from gateway.ui.users import users_context
from gateway.usage.roll_groups import DIMENSIONS

STATIC = Path(__file__).parent / "static"
Identity = tuple[str, str, str | None, str | None, str | None]  # name, role, user, tier, team
OPERATOR_PAGES = (
    ("overview", "Overview"),
    ("analytics", "Usage"),
    ("keys", "Keys"),
    ("users", "Users"),
    ("orgs", "Organizations"),
    ("flags", "Flags"),
    ("quotas", "Quotas"),
    ("providers", "Providers"),
    ("requests", "Quota requests"),
    ("statements", "Statements"),
    ("batches", "Batches"),
    ("audit", "Audit log"),
)
PAGE_NAMES = {name for name, _ in OPERATOR_PAGES}
MY_BATCHES = 20  # the latest batches shown on the user's page
# every limit a quota has (``control/tier_quotas.FIELDS``), as the pages label them
LIMITS = (
    ("requests_per_day", "Requests/day"),
    ("tokens_per_day", "Tokens/day"),
    ("tokens_per_request", "Tokens/request"),
    ("minutes_per_day", "Audio minutes/day"),
)


def _sessions(request: Request) -> Sessions:
    return Sessions(services(request).store)


async def login_form(request: Request) -> Response:
    return _login_page(request, 200, None)


def _login_page(request: Request, status: int, error: str | None) -> Response:
    """The sign-in form with its pre-session token (see ``login_guard``)."""
    presession_id = login_guard.presession(request)
    token = login_guard.form_token(presession_id)
    response = page("login.html", status, error=error, pages=(), session=None, login_token=token)
    login_guard.keep_presession(request, response, presession_id)
    return response


async def login(request: Request) -> Response:
    form = await request.form()
    refused = login_guard.refusal(request, str(form.get(login_guard.FORM_FIELD) or ""))
    if refused is not None:
        return _login_page(request, 403, refused)
    token = str(form.get("token") or "").strip()
    try:
        found = _identify(request, token) if token else None
    except TooManyFailedAttempts as error:
        response = _login_page(request, 429, error.message)
        response.headers.update(error.headers)
        return response
    if found is None:
        return _login_page(request, 401, "Unknown token or key.")
    name, role, user, tier, team = found
    session_id, session = await _sessions(request).create(
        name, role, sha256_hex(token), user, tier, team
    )
    response = RedirectResponse(teams.home_of(asdict(session)), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _identify(request: Request, token: str) -> Identity | None:
    """(actor name, role, user, tier, team) of an admin token, a team token or a client key;
    None if none (a failure the throttle counts); 429 while the address or the token's prefix
    is blocked."""
    gateway = services(request)
    throttle, address = gateway.keyring.throttle, client_address(request.scope)
    if throttle.active:
        throttle.check(address, token)
    actor = admin_actor(gateway, token)
    if actor is not None:
        return actor.name, actor.role, None, None, None
    scoped = team_token(gateway, token)
    if scoped is not None:
        return scoped[0].name, scoped[0].role, None, None, scoped[1]
    try:
        principal = gateway.keyring.identify(token)
    except GatewayError:
        return None  # an expired key
    if principal is None:
        throttle.failed("sign_in", address, token)
        return None
    return f"key:{principal.key_id}", "user", principal.user, principal.tier.name, None


async def logout(request: Request) -> Response:
    session = session_of(request.scope)
    form = await request.form()
    if session is not None and hmac.compare_digest(
        str(form.get("csrf") or "").encode(), str(session["csrf"]).encode()
    ):
        await _sessions(request).delete(session["id"])
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def home(request: Request) -> Response:
    session = session_of(request.scope)
    if session is None:
        return RedirectResponse("/ui/login", status_code=303)
    return RedirectResponse(teams.home_of(session), status_code=303)


async def operator_page(request: Request) -> Response:
    name = request.path_params["page"]
    session = session_of(request.scope)
    if session is None:
        return RedirectResponse("/ui/login", status_code=303)
    if session["role"] == "user":
        return RedirectResponse("/ui/me", status_code=303)
    if session["role"] in TEAM_ROLES:
        refusal = Forbidden("This page is for operators; this session is scoped to a team.")
        return teams.refused(session, refusal)
    if name not in PAGE_NAMES:
        return page("missing.html", 404, pages=OPERATOR_PAGES, session=session, current="")
    gateway = services(request)
    context: dict[str, Any] = {
        "pages": OPERATOR_PAGES,
        "session": session,
        "current": name,
        "tiers": sorted(gateway.config.tiers),
        "capabilities": CAPABILITIES,
        "upstreams": sorted(gateway.config.upstreams),
        "limits": LIMITS,
    }
    if name == "overview":
        period = request.query_params.get("period") or "24h"
        context.update(await overview_view(gateway.analytics, gateway.clock(), period))
    elif name == "users":
        context.update(await users_context(request, gateway))
    elif name == "statements":
        context.update(await statements.operator_context(request, gateway))
    elif name == "orgs":
        context.update(await orgs_context(gateway))
    elif name == "batches":
        context.update(await batches.operator_context(request))
    elif name == "analytics":
        try:
            context.update(await _analytics_context(request))
        except GatewayError as error:
            context.update(await _analytics_context(request, {}), error=error.message)
    return page(f"{name}.html", **context)


async def _analytics_context(request: Request, params: Any = None) -> dict[str, Any]:
    gateway = services(request)
    query = request.query_params if params is None else params
    now = gateway.clock()
    if not query.get("start"):
        query = {**dict(query), "start": str(int(now - 7 * 86_400))}
    flt = rollup_window(usage_filter(query, now), now)
    groups, bucket = group_and_bucket({"group_by": query.get("group_by") or "model", **query})
    shown = {k: v for k, v in dict(query).items() if v and k != "cursor"}
    cursor = records_cursor(query, gateway.analytics.source)
    context = await analytics_view(gateway.analytics, flt, groups[:1] or ["model"], bucket, cursor)
    context.update(
        params=shown,
        filters=FILTERS,
        dimensions=DIMENSIONS,
        export_query=urlencode({k: v for k, v in shown.items() if k in (*FILTERS, "start", "end")}),
        next_query=urlencode({**shown, "cursor": context["next_cursor"]})
        if context["next_cursor"]
        else None,
        error=None,
    )
    return context


async def me(request: Request) -> Response:
    session = session_of(request.scope)
    if session is None:
        return RedirectResponse("/ui/login", status_code=303)
    if session["role"] in TEAM_ROLES:
        return RedirectResponse(teams.home_of(session), status_code=303)
    batches = await _my_batches(request, session.get("user"))
    return page(
        "me.html",
        pages=(),
        session=session,
        current="me",
        capabilities=CAPABILITIES,
        limits=LIMITS,
        upstreams=sorted(services(request).config.upstreams),
        batches=batches,
    )


async def _my_batches(request: Request, user: str | None) -> list[dict[str, Any]]:
    """The signed-in user's latest batches and their progress (``/v1/batches``'s objects)."""
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    if user is None or gateway.batches is None:
        return []
    now = gateway.clock()
    found = await gateway.batches.list(user)
    return [public_batch(record, progress, now) for record, progress in found[:MY_BATCHES]]


def routes() -> list[BaseRoute]:
    return [
        Route("/ui", home, methods=["GET"]),
        Route("/ui/", home, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Route("/ui/me", me, methods=["GET"]),
        Route("/ui/me/statement", statements.my_statement, methods=["GET"]),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static"),
        Route("/ui/teams/{team}", teams.team_page, methods=["GET"]),
        Route("/ui/teams/{team}/{page}", teams.team_page, methods=["GET"]),
        Route("/ui/{page}", operator_page, methods=["GET"]),
    ]
