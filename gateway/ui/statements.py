"""The dashboard's monthly statement pages, for a user and for operators.

A user's own month (``/ui/me/statement``) and every user's month for operators
(``/ui/statements``), rendered on the server from the statements API's functions; downloads
link to the API (the session cookie is accepted there)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.errors import GatewayError
from gateway.http.admin.team_auth import TEAM_ROLES
from gateway.http.api.statements import statements_page, user_statement
from gateway.http.services import Services, services
from gateway.ui.render import page
from gateway.ui.session import session_of

PAGE = 50


def _month(request: Request, gateway: Services) -> str:
    chosen = request.query_params.get("month")
    return chosen or datetime.fromtimestamp(gateway.clock(), UTC).strftime("%Y-%m")


async def my_statement(request: Request) -> Response:
    session = session_of(request.scope)
    if session is None:
        return RedirectResponse("/ui/login", status_code=303)
    if session["role"] in TEAM_ROLES:
        return RedirectResponse(f"/ui/teams/{session['team']}/statement", status_code=303)
    if session["role"] != "user":
        return RedirectResponse("/ui/statements", status_code=303)
    gateway = services(request)
    month = _month(request, gateway)
    context: dict[str, Any] = {"pages": (), "session": session, "current": "me", "month": month}
    try:
        found = await user_statement(gateway, session["user"], session["tier"], month)
        context.update(statement=found.as_json(), error=None)
    except GatewayError as error:
        context.update(statement=None, error=error.message)
    return page("statement.html", 200 if context["error"] is None else 400, **context)


async def operator_context(request: Request, gateway: Services) -> dict[str, Any]:
    """The ``/ui/statements`` page's context: a page of the month's statements."""
    month = _month(request, gateway)
    after = request.query_params.get("cursor") or ""
    context: dict[str, Any] = {"month": month, "error": None, "next_query": None}
    try:
        found = await statements_page(gateway, month, after, PAGE + 1)
    except GatewayError as error:
        return {**context, "statements": [], "error": error.message}
    if len(found) > PAGE:
        found = found[:PAGE]
        context["next_query"] = urlencode({"month": month, "cursor": found[-1].user})
    context["statements"] = [s.as_json() for s in found]
    return context
