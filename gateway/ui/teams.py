"""The dashboard's pages of one team: overview, keys, members, usage and monthly statement.

A team token's session (``team_admin`` or ``team_viewer``) sees its own team's pages and
nothing else; operators may open any team's. Every page asks ``require_team`` first, the check
the team endpoints of the admin API make, so the pages show exactly what those endpoints would
answer the same session: the overview the team's and its organization's limits and current use
(the ``levels`` of ``/v1/quota``, and ``/v1/admin/teams/{team}/usage``), the usage and
statement pages the team's analytics (``/v1/admin/teams/{team}/analytics``). The keys page
lists, creates, rotates and revokes through ``/v1/admin/teams/{team}/keys`` from the script,
with the session's CSRF token; the downloads are ``/v1/admin/teams/{team}/export``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.control import keys as runtime_keys
from gateway.control.orgs import ORGS, TEAMS
from gateway.errors import GatewayError, StoreUnavailable
from gateway.http.admin.analytics import FILTERS, group_and_bucket, records_cursor, rollup_window
from gateway.http.admin.team_auth import TEAM_ROLES, require_team
from gateway.http.admin.team_keys import team_usage
from gateway.http.admin.team_usage import team_filter
from gateway.http.services import Services, services
from gateway.metering.quota_view import build_level_view, level_view_keys
from gateway.store.port import StoreError
from gateway.ui.overview import analytics_view, with_rates
from gateway.ui.render import page
from gateway.ui.session import session_of
from gateway.usage.roll_groups import DIMENSIONS
from gateway.usage.statements import month_bounds

PAGES = (
    ("", "Overview"),
    ("keys", "Keys"),
    ("members", "Members"),
    ("usage", "Usage"),
    ("statement", "Statement"),
)
PAGE_NAMES = {name for name, _ in PAGES}
WINDOWS = ("minute", "hour", "day", "month")
TEAM_FILTERS = tuple(name for name in FILTERS if name not in ("org", "team"))
STATEMENT_GROUPS = ["user", "capability", "model"]


def home_of(session: Mapping[str, Any]) -> str:
    """Where a session lands: its team's overview, the user page, or the operators'."""
    if session["role"] in TEAM_ROLES:
        return f"/ui/teams/{session['team']}"
    return "/ui/me" if session["role"] == "user" else "/ui/overview"


def navigation(session: Mapping[str, Any], team_id: str | None) -> tuple[tuple[str, str], ...]:
    """The links a page shows: a team session's own team's pages; an operator's on a team's
    page, the organizations page and that team's pages."""
    if session["role"] in TEAM_ROLES:
        team_id = str(session["team"])
    elif session["role"] == "user" or team_id is None:
        return ()
    links = tuple((f"teams/{team_id}/{name}".rstrip("/"), label) for name, label in PAGES)
    return links if session["role"] in TEAM_ROLES else (("orgs", "Organizations"), *links)


def refused(session: Mapping[str, Any], error: GatewayError) -> Response:
    """A page the session may not see (403) or that does not exist (404), in the UI's shape."""
    heading = "Not found" if error.status == 404 else "Not allowed"
    return page(
        "refused.html",
        error.status,
        pages=navigation(session, None),
        session=session,
        current="",
        heading=heading,
        message=error.message,
    )


async def team_page(request: Request) -> Response:
    session = session_of(request.scope)
    if session is None:
        return RedirectResponse("/ui/login", status_code=303)
    team_id = request.path_params["team"]
    name = request.path_params.get("page", "")
    try:
        require_team(request, team_id, write=False)  # 403 for another team, before any 404
    except GatewayError as error:
        return refused(session, error)
    nav = navigation(session, team_id)
    current = f"teams/{team_id}/{name}".rstrip("/")
    if name not in PAGE_NAMES:
        return page("missing.html", 404, pages=nav, session=session, current="")
    gateway = services(request)
    context: dict[str, Any] = {
        "pages": nav,
        "session": session,
        "current": current,
        "script": f"team-{name or 'overview'}",
        "team_id": team_id,
        "team": gateway.control.snapshot.kind(TEAMS)[team_id],
    }
    status = 200
    if name == "":
        context.update(await _overview(gateway, team_id))
    elif name == "members":
        context.update(_members(gateway, team_id))
    elif name == "usage":
        try:
            context.update(await _usage(request, team_id, request.query_params))
        except GatewayError as error:
            context.update(await _usage(request, team_id, {}), error=error.message)
            status = 400
    elif name == "statement":
        context.update(await _statement(request, team_id))
        status = 200 if context["error"] is None else 400
    template = {
        "": "team.html",
        "keys": "team_keys.html",
        "members": "team_members.html",
        "usage": "analytics.html",
        "statement": "team_statement.html",
    }[name]
    return page(template, status, **context)


async def _overview(gateway: Services, team_id: str) -> dict[str, Any]:
    """The organization, the limits of both levels with what is used and left in each window
    (``/v1/quota``'s ``levels``), and the team's own counters in every window."""
    team = gateway.control.snapshot.kind(TEAMS)[team_id]
    org = gateway.control.snapshot.kind(ORGS).get(str(team.get("org"))) or {}
    view = gateway.keyring.hierarchy.teams.get(team_id)
    levels: list[dict[str, Any]] | None = []
    usage: dict[str, Any] | None = None
    try:
        if view is not None:
            now = gateway.clock()
            hashes = await gateway.control.read_counters(level_view_keys(view.levels, now))
            levels = build_level_view(view.levels, now, hashes)
        usage = await team_usage(gateway, team_id)
    except (StoreError, StoreUnavailable):
        levels = None  # the store is down: limits shown without their use
    keys = [
        doc
        for doc in gateway.control.snapshot.kind(runtime_keys.KIND).values()
        if doc.get("team") == team_id
    ]
    return {
        "org_id": team.get("org"),
        "org": org,
        "levels": levels,
        "usage": usage,
        "windows": WINDOWS,
        "key_count": len(keys),
    }


def _members(gateway: Services, team_id: str) -> dict[str, Any]:
    team = gateway.control.snapshot.kind(TEAMS)[team_id]
    keys: dict[str, int] = {}
    for doc in gateway.control.snapshot.kind(runtime_keys.KIND).values():
        if doc.get("team") == team_id:
            keys[str(doc.get("user"))] = keys.get(str(doc.get("user")), 0) + 1
    members = [{"user": user, "keys": keys.get(str(user), 0)} for user in team.get("members") or ()]
    return {"members": members}


async def _usage(request: Request, team_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The usage analytics page's context (its template is the operators'), for one team."""
    gateway = services(request)
    now = gateway.clock()
    query = dict(params)
    if not query.get("start"):
        query["start"] = str(int(now - 7 * 86_400))
    flt = rollup_window(team_filter(request, team_id, query), now)
    groups, bucket = group_and_bucket({**query, "group_by": query.get("group_by") or "user"})
    shown = {
        k: v
        for k, v in query.items()
        if v and k in (*TEAM_FILTERS, "start", "end", "group_by", "bucket")
    }
    cursor = records_cursor(query, gateway.analytics.source)
    context = await analytics_view(gateway.analytics, flt, groups[:1] or ["user"], bucket, cursor)
    base = f"/ui/teams/{team_id}/usage"
    following = context["next_cursor"]
    context.update(
        params=shown,
        filters=TEAM_FILTERS,
        dimensions=[d for d in DIMENSIONS if d != "org"],
        action=base,
        export_path=f"/v1/admin/teams/{team_id}/export",
        export_query=urlencode(
            {k: v for k, v in shown.items() if k in (*TEAM_FILTERS, "start", "end")}
        ),
        next_path=base,
        next_query=urlencode({**shown, "cursor": following}) if following else None,
        error=None,
    )
    return context


async def _statement(request: Request, team_id: str) -> dict[str, Any]:
    """The team's month: what its keys were charged, by member, capability and model."""
    gateway = services(request)
    month = request.query_params.get("month") or datetime.fromtimestamp(
        gateway.clock(), UTC
    ).strftime("%Y-%m")
    context: dict[str, Any] = {"month": month, "lines": [], "totals": None, "error": None}
    try:
        start, end = month_bounds(month)
    except ValueError as error:
        return {**context, "error": str(error)}
    bounds = {"start": str(int(start)), "end": str(int(end))}
    try:
        flt = rollup_window(team_filter(request, team_id, bounds), gateway.clock())
        rows = await gateway.analytics.totals(flt, STATEMENT_GROUPS, "all")
    except GatewayError as error:
        return {**context, "error": error.message}
    lines = sorted(with_rates(rows), key=lambda r: (r["user"], r["capability"], r["model"]))
    totals = {
        name: sum(row[name] for row in rows) for name in ("requests", "total_tokens", "cost_usd")
    }
    return {**context, "lines": lines, "totals": totals, "export_query": urlencode(bounds)}
