"""GET /v1/quota and GET /v1/usage: the caller's limits and records (any user's for admins)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.model import Tier
from gateway.errors import InvalidRequest
from gateway.http.admin_auth import SESSION_SCOPE_KEY, operator
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.metering import parse_range, to_csv
from gateway.metering.export import by_tag, with_tag
from gateway.proxy.auth import presented_key


async def quota(request: Request) -> Response:
    gateway = services(request)
    user, tier = _caller(request, gateway)
    return json_response(await gateway.meter.quota_view(user, tier))


def _caller(request: Request, gateway: Services) -> tuple[str, Tier]:
    """The client key's user and tier, or those of the dashboard user signed in (cookie)."""
    session = request.scope.get(SESSION_SCOPE_KEY)
    if session and session["role"] == "user" and presented_key(request.headers) is None:
        tier = gateway.config.tiers.get(session["tier"])
        if tier is not None:
            return session["user"], tier
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    return principal.user, principal.tier


async def usage(request: Request) -> Response:
    gateway = services(request)
    params = request.query_params
    fmt = params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidRequest("'format' must be 'json' or 'csv'.", param="format")
    try:
        start, end = parse_range(params.get("from"), params.get("to"), gateway.clock())
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="from") from None
    if operator(request) is not None:  # an admin or viewer: any user's records
        user = params.get("user")  # None: every user
    else:
        user = _caller(request, gateway)[0]
        if params.get("user") not in (None, user):
            raise InvalidRequest(
                "Only an operator token may read other users' usage.", param="user"
            )
    records = await gateway.meter.records(user, start, end)
    if (tag := params.get("tag")) is not None:
        records = with_tag(records, tag)
    if params.get("group_by") == "tag":
        return json_response({"object": "list", "data": by_tag(records)})
    if fmt == "csv":
        return Response(to_csv(records), media_type="text/csv")
    # source: "postgres" (the ledger: any range) or "redis" (the stream: recent records only)
    return json_response(
        {"object": "list", "data": records, "source": gateway.meter.records_source}
    )


def routes() -> list[Route]:
    return [
        Route("/v1/quota", quota, methods=["GET"]),
        Route("/v1/usage", usage, methods=["GET"]),
    ]
