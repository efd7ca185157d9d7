"""A team's usage analytics, records and export (``/v1/admin/teams/{team}/analytics``, ...).

The same query parameters and answers as ``/v1/admin/analytics``, ``/v1/admin/usage/records``
and ``/v1/admin/usage/export`` (``…/records``, ``…/export``), always filtered to the records
of the team's keys (the team a record's key was in when it was made): a team token reads its
own team's and no other (403), operators any team. A ``team`` parameter naming another team is
refused rather than ignored, so a caller never mistakes the team's totals for another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import Forbidden
from gateway.http.admin.analytics import (
    export_format,
    export_response,
    group_and_bucket,
    records_cursor,
    records_limit,
    rollup_window,
    usage_filter,
)
from gateway.http.admin.team_auth import require_team
from gateway.http.responses import json_response
from gateway.http.services import services
from gateway.usage.analytics import UsageFilter


def team_filter(
    request: Request, team_id: str, params: QueryParams | Mapping[str, str]
) -> UsageFilter:
    """The filter ``params`` describe, always ``team=team_id``; 401/403/404 unless the caller
    may read the team's usage."""
    require_team(request, team_id, write=False)
    asked = params.get("team")
    if asked not in (None, "", team_id):
        raise Forbidden("This endpoint reads its own team's usage only.", code="wrong_team")
    flt = usage_filter(params, services(request).clock())
    return replace(flt, team=team_id)


def _team_filter(request: Request) -> UsageFilter:
    return team_filter(request, request.path_params["team"], request.query_params)


async def analytics(request: Request) -> Response:
    flt = _team_filter(request)
    gateway = services(request)
    groups, bucket = group_and_bucket(request.query_params)
    rows = await gateway.analytics.totals(rollup_window(flt, gateway.clock()), groups, bucket)
    return json_response({"object": "analytics", "source": gateway.analytics.source, "data": rows})


async def records(request: Request) -> Response:
    flt = _team_filter(request)
    gateway = services(request)
    limit = records_limit(request.query_params)
    cursor = records_cursor(request.query_params, gateway.analytics.source)
    found, following = await gateway.analytics.records(flt, limit, cursor)
    data = [record.as_dict() for record in found]
    return json_response({"object": "list", "data": data, "next_cursor": following})


async def export(request: Request) -> Response:
    flt = _team_filter(request)  # the caller is checked first
    fmt = export_format(request.query_params)
    return await export_response(services(request).analytics, flt, fmt, f"usage-{flt.team}")
