"""GET /v1/quota and GET /v1/usage: the caller's limits and records (any user's for admins)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.model import Tier
from gateway.errors import InvalidRequest, StoreUnavailable
from gateway.http.admin.analytics import refuse_control_characters
from gateway.http.admin.auth import SESSION_SCOPE_KEY, operator
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.metering.quota_view import build_level_view, level_view_keys
from gateway.metering.record import UsageRecord
from gateway.metering.types import LevelLimits
from gateway.proxy.auth import presented_key
from gateway.store.port import StoreError
from gateway.usage.export import COLUMNS, by_tag, parse_range, to_csv, with_tag
from gateway.usage.spreadsheet import XLSX, records_workbook

MAX_PAGE = 1000  # records per /v1/usage answer (and the default)
MAX_TS = 253_402_300_799.0  # 9999-12-31T23:59:59Z
NEXT_CURSOR_HEADER = "x-gateway-next-cursor"


async def quota(request: Request) -> Response:
    """The caller's quotas and budgets; a team key's also its organization's and team's limits
    in each window (``levels``)."""
    gateway = services(request)
    user, tier, levels = _caller_levels(request, gateway)
    view = await gateway.meter.users.quota_view(user, tier)
    if levels:
        now = gateway.clock()
        try:
            hashes = await gateway.control.read_counters(level_view_keys(levels, now))
        except StoreError:
            raise StoreUnavailable("The store is unavailable; try again") from None
        view["levels"] = build_level_view(levels, now, hashes)
    return json_response(view)


def caller(request: Request, gateway: Services) -> tuple[str, Tier]:
    """The client key's user and tier, or those of the dashboard user signed in (cookie)."""
    user, tier, _ = _caller_levels(request, gateway)
    return user, tier


def _caller_levels(
    request: Request, gateway: Services
) -> tuple[str, Tier, tuple[LevelLimits, ...]]:
    session = request.scope.get(SESSION_SCOPE_KEY)
    if session and session["role"] == "user" and presented_key(request.headers) is None:
        tier = gateway.config.tiers.get(session["tier"])
        if tier is not None:
            return session["user"], tier, ()
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    return principal.user, principal.tier, principal.levels


async def usage(request: Request) -> Response:
    gateway = services(request)
    params = request.query_params
    fmt = params.get("format", "json")
    if fmt not in ("json", "csv", "xlsx"):
        raise InvalidRequest("'format' must be 'json', 'csv' or 'xlsx'.", param="format")
    try:
        start, end = parse_range(params.get("from"), params.get("to"), gateway.clock())
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="from") from None
    if operator(request) is not None:  # an admin or viewer: any user's records
        user = params.get("user")  # None: every user
    else:
        user = caller(request, gateway)[0]
        if params.get("user") not in (None, user):
            raise InvalidRequest(
                "Only an operator token may read other users' usage.", param="user"
            )
    for name in ("user", "tag"):
        if (value := params.get(name)) is not None:
            refuse_control_characters(name, value)
    if params.get("group_by") == "tag":  # totals over the whole range, not rows
        records = await gateway.usage_records.read(user, start, end)
        if (tag := params.get("tag")) is not None:
            records = with_tag(records, tag)
        return json_response({"object": "list", "data": by_tag(records)})
    limit = page_limit(params)
    page = UsagePage.parse(params.get("cursor"))
    if page is not None:
        start = max(start, page.ts)
    skip = page.seen if page is not None else 0
    records = await gateway.usage_records.read(user, start, end, skip=skip, limit=limit + 1)
    more, records = len(records) > limit, records[:limit]
    following = UsagePage.after(records, page).text() if more else None
    if (tag := params.get("tag")) is not None:
        records = with_tag(records, tag)
    if fmt in ("csv", "xlsx"):
        headers = {NEXT_CURSOR_HEADER: following} if following else {}
        if fmt == "csv":
            return Response(to_csv(records), media_type="text/csv", headers=headers)
        headers["content-disposition"] = 'attachment; filename="usage.xlsx"'
        body = records_workbook(records, COLUMNS)
        return Response(body, media_type=XLSX, headers=headers)
    # source: "postgres" (the ledger: any range) or "redis" (the stream: recent records only)
    return json_response(
        {
            "object": "list",
            "data": [record.as_dict() for record in records],
            "source": gateway.usage_records.source,
            "has_more": more,
            "next_cursor": following,
        }
    )


def page_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit") or str(MAX_PAGE)
    if not text.isdecimal() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}.", param="limit")
    return int(text)


@dataclass(frozen=True)
class UsagePage:
    """Where the next page of ``/v1/usage`` starts: at the records stamped ``ts`` or later
    (oldest first), the first ``seen`` of those stamped exactly ``ts`` already shown."""

    ts: float
    seen: int

    @classmethod
    def parse(cls, text: str | None) -> UsagePage | None:
        if not text:
            return None
        stamp, _, seen = text.partition(":")
        try:
            ts = float(stamp)
        except ValueError:
            ts = -1.0
        if not (0.0 <= ts <= MAX_TS and seen.isdecimal() and len(seen) <= 9):
            raise InvalidRequest(
                "'cursor' must be a next_cursor from a previous page.", param="cursor"
            )
        return cls(ts, int(seen))

    @classmethod
    def after(cls, shown: list[UsageRecord], page: UsagePage | None) -> UsagePage:
        last = shown[-1].ts
        same = sum(1 for record in shown if record.ts == last)
        if page is not None and page.ts == last:
            same += page.seen  # the whole page shared one stamp with the page before
        return cls(last, same)

    def text(self) -> str:
        return f"{self.ts!r}:{self.seen}"


def routes() -> list[Route]:
    return [
        Route("/v1/quota", quota, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
    ]
