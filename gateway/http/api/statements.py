"""GET /v1/me/statements/{YYYY-MM} (the caller's own) and /v1/admin/statements (viewer role).

Both take ``format`` (``json``, ``csv`` or ``xlsx``). The admin list takes ``month`` (required),
``limit`` (1-500, default 100) and ``cursor`` (the ``next_cursor`` of the page before: the last
user shown), users in id order. The lines come from the ledger when it is configured, else from
the Redis rollups (brought up to date first). See ``metering/statements.py`` for the rules.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import Forbidden, InvalidRequest
from gateway.http.admin.analytics import refuse_control_characters
from gateway.http.admin.auth import require_role
from gateway.http.api.account import caller
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.ledger.statements import ledger_lines, ledger_users
from gateway.usage.analytics import RedisAnalytics
from gateway.usage.spreadsheet import XLSX
from gateway.usage.statement_export import statements_csv, statements_xlsx
from gateway.usage.statement_rollups import rollup_lines
from gateway.usage.statements import (
    Statement,
    UsageLine,
    build_statements,
    month_bounds,
    statement,
)

FORMATS = ("json", "csv", "xlsx")
MAX_PAGE = 500


async def my_statement(request: Request) -> Response:
    gateway = services(request)
    user, tier = caller(request, gateway)
    if request.query_params.get("user") not in (None, user):
        raise Forbidden(
            "A statement can only be read by its own user (operators: /v1/admin/statements).",
            code="permission_denied",
            param="user",
        )
    fmt = _format(request)
    month = request.path_params["month"]
    found = await user_statement(gateway, user, tier.name, month)
    if fmt == "json":
        return json_response(found.as_json())
    return _download([found], fmt, f"statement-{month}")


async def all_statements(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    params = request.query_params
    fmt = _format(request)
    month = params.get("month") or ""
    limit_text = params.get("limit") or "100"
    if not limit_text.isdecimal() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}.", param="limit")
    limit = int(limit_text)
    after = params.get("cursor") or ""
    refuse_control_characters("cursor", after)
    page = await statements_page(gateway, month, after, limit + 1)
    more, page = len(page) > limit, page[:limit]
    following = page[-1].user if more else None
    if fmt != "json":
        return _download(page, fmt, f"statements-{month}")
    return json_response(
        {
            "object": "list",
            "month": month,
            "data": [found.as_json() for found in page],
            "has_more": more,
            "next_cursor": following,
        }
    )


async def user_statement(gateway: Services, user: str, tier: str, month: str) -> Statement:
    """``user``'s statement of ``month`` (``YYYY-MM``; else ``InvalidRequest``); ``tier``:
    the user's tier now, shown on a month without usage."""
    start, end = _bounds(month, "month")
    lines = await _lines(gateway, start, end, [user])
    return statement(user, lines, gateway.config.tiers, month, _source(gateway), tier)


async def statements_page(gateway: Services, month: str, after: str, most: int) -> list[Statement]:
    """Up to ``most`` statements of ``month``, of the users after ``after``, by user id."""
    start, end = _bounds(month, "month")
    source = _source(gateway)
    if gateway.ledger is not None:
        users = await ledger_users(gateway.ledger.database, start, end, after, most)
        lines = await ledger_lines(gateway.ledger.database, start, end, users)
    else:
        lines = [line for line in await _lines(gateway, start, end, None) if line.user > after]
    return build_statements(lines, gateway.config.tiers, month, source)[:most]


async def _lines(
    gateway: Services, start: float, end: float, users: list[str] | None
) -> list[UsageLine]:
    if gateway.ledger is not None and users is not None:
        return await ledger_lines(gateway.ledger.database, start, end, users)
    analytics = gateway.analytics
    if isinstance(analytics, RedisAnalytics):
        await analytics.refresh()  # fold the requests finished so far
    if users is None:
        return await rollup_lines(gateway.store, start, end)
    return [line for user in users for line in await rollup_lines(gateway.store, start, end, user)]


def _source(gateway: Services) -> str:
    return "postgres" if gateway.ledger is not None else "redis"


def _format(request: Request) -> str:
    fmt = request.query_params.get("format") or "json"
    if fmt not in FORMATS:
        raise InvalidRequest("'format' must be 'json', 'csv' or 'xlsx'.", param="format")
    return fmt


def _bounds(month: str, param: str) -> tuple[float, float]:
    try:
        return month_bounds(month)
    except ValueError as error:
        raise InvalidRequest(str(error), param=param) from None


def _download(found: list[Statement], fmt: str, name: str) -> Response:
    headers = {"content-disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "csv":
        return Response(statements_csv(found), media_type="text/csv", headers=headers)
    return Response(statements_xlsx(found), media_type=XLSX, headers=headers)
