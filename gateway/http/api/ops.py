"""Health, readiness, the metrics scrape and the operator's provider view.

Readiness counts the control plane's stored system keys: an upstream without its env key but
with stored keys that open is not a reason to be unready.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.targets import route_targets, unusable_routes
from gateway.errors import Unauthorized
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.observe.metrics import render
from gateway.proxy.auth import presented_key
from gateway.proxy.breaker import State
from gateway.secret import Secret


def require_token(request: Request, token: Secret | None, what: str) -> None:
    """Constant-time check of a bearer token; no token configured means open."""
    if token is None:
        return
    presented = presented_key(request.headers) or ""
    if not hmac.compare_digest(presented.encode(), token.reveal().encode()):
        raise Unauthorized(f"This endpoint needs the {what} token.")


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    gateway = services(request)
    store = await gateway.meter.store_status()
    models = [m.name for m in gateway.config.models.values()]
    open_models = [m for m in models if gateway.breakers.state(m) is State.OPEN]
    upstream_ok = len(open_models) < len(models)
    store_ok = store == "ok" or gateway.config.settings.on_store_error == "allow"
    stored = stored_upstreams(gateway)
    unusable = unusable_routes(gateway.config, stored)
    strict = gateway.config.settings.readiness == "strict"
    ready = upstream_ok and store_ok and not (strict and unusable)
    document = {
        "status": "ready" if ready else "not_ready",
        "config": "loaded",
        "store": store,
        "open_circuits": open_models,
        "probing": {
            m: round(age, 1) for m in models if (age := gateway.breakers.probe_age(m)) is not None
        },
        "routes_without_targets": unusable,
    }
    if gateway.ledger is not None:  # informative: a lagging ledger does not stop serving
        document["ledger"] = gateway.ledger.status()
    if not ready:
        document["reason"] = _reason(upstream_ok, store_ok, unusable, gateway, stored)
    return json_response(document, 200 if ready else 503)


def stored_upstreams(gateway: Services) -> Collection[str]:
    """The upstreams with stored system keys this process could open."""
    stored = gateway.stored_keys
    return frozenset() if stored is None else stored.pool.upstreams()


def _reason(
    upstream_ok: bool,
    store_ok: bool,
    unusable: list[str],
    gateway: Services,
    stored: Collection[str],
) -> str:
    """Why not ready, in one sentence per cause."""
    reasons = []
    if unusable:
        missing = sorted(
            {
                reason
                for report in route_targets(gateway.config, stored)
                if not report.usable
                for _, reason in report.skipped
            }
        )
        reasons.append(
            f"no target can be tried for {', '.join(unusable)} ({'; '.join(missing)}); "
            "set the key or store one (PUT /v1/admin/upstreams/{name}/keys), "
            "or settings.readiness: lenient"
        )
    if not store_ok:
        reasons.append("the usage store is unreachable and settings.on_store_error is deny")
    if not upstream_ok:
        reasons.append("every upstream model's circuit is open")
    return ". ".join(reasons)


async def metrics(request: Request) -> Response:
    gateway = services(request)
    require_token(request, gateway.runtime.metrics_token, "metrics")
    refresh_gauges(gateway)
    body, content_type = render(gateway.metrics)
    return Response(body, media_type=content_type)


def refresh_gauges(gateway: Services) -> None:
    """Gauges read from live state at scrape time (each worker reports its own)."""
    m, meter = gateway.metrics, gateway.meter
    for model, state in gateway.breakers.states().items():
        m.circuit_state.labels(model).set(int(state))
    m.usage_buffered.set(meter.buffered_records)
    for scope, active in meter.active_alerts.items():
        m.cost_alert_active.labels(scope).set(1 if active else 0)


def require_admin(request: Request, gateway: Services, role: str = "admin") -> None:
    """An admin token (``GATEWAY_ADMIN_TOKEN`` or a stored one) granting ``role``."""
    require_role(request, role)


async def providers(request: Request) -> Response:
    gateway = services(request)
    require_admin(request, gateway, "viewer")
    data = [
        {
            "model": model.name,
            "provider": model.upstream.name,
            "upstream_model": model.upstream_model,
            "circuit": gateway.breakers.state(model.name).name.lower(),
            **gateway.stats.summary(model.name),
        }
        for model in gateway.config.models.values()
    ]
    return json_response({"object": "list", "data": data})


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/providers", providers, methods=["GET"]),
    ]
