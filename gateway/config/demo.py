"""Demo mode: the built-in demo upstream serves each route that no upstream key can serve.

``gateway serve --demo`` adds the upstream ``demo`` (a reserved host that
``gateway.providers.demo`` answers in-process, no network) and one model per route name. A
route keeps its chain when any of its targets has its upstream key set (so the same command with
``TOGETHER_API_KEY`` set uses Together); a route with none (keyless upstreams such as a local
Ollama do not count: nothing shows they run) is served by the demo model alone. Never applied
without ``--demo``.
"""

from __future__ import annotations

import dataclasses

from gateway.config.model import MODALITIES, Config, Model, Tier, Upstream, build_lookup
from gateway.config.targets import RouteTargets, route_targets, skip_reason

DEMO_UPSTREAM = "demo"
DEMO_HOST = "demo-upstream.gateway.invalid"  # .invalid is reserved (RFC 2606): never resolves
DEMO_BASE_URL = f"http://{DEMO_HOST}/v1"


def demo_models() -> dict[str, Model]:
    upstream = Upstream(DEMO_UPSTREAM, DEMO_BASE_URL, None)
    return {
        f"demo-{route}": Model(f"demo-{route}", upstream, f"demo/{route}", route)
        for route in MODALITIES
    }


def has_keyed_target(chain: tuple[Model, ...]) -> bool:
    return any(m.upstream.requires_key and m.upstream.api_key is not None for m in chain)


def with_demo(config: Config) -> Config:
    """``config`` with the demo upstream serving every route no upstream key serves."""
    models = demo_models()
    tiers = {name: _demo_tier(tier, models) for name, tier in config.tiers.items()}
    demo_upstream = next(iter(models.values())).upstream
    return dataclasses.replace(
        config,
        upstreams={**config.upstreams, DEMO_UPSTREAM: demo_upstream},
        models={**config.models, **models},
        tiers=tiers,
        known_models=config.known_models
        | frozenset(models)
        | {m.upstream_model for m in models.values()},
    )


def _demo_tier(tier: Tier, models: dict[str, Model]) -> Tier:
    """The demo model alone on each route without a keyed target; the tier as listed kept
    beside it, so that weights can still be set (and shown) for the listed models."""
    demoed = {route for route, chain in tier.routes.items() if not has_keyed_target(chain)}
    if not demoed:
        return tier
    routes = {
        route: (models[f"demo-{route}"],) if route in demoed else chain
        for route, chain in tier.routes.items()
    }
    return dataclasses.replace(
        tier,
        routes=routes,
        lookup=build_lookup(routes),
        # a weight per entry of the listed chain means nothing for the one demo model
        weights={route: w for route, w in tier.weights.items() if route not in demoed},
        as_listed=tier,
    )


def uses_demo(config: Config) -> bool:
    return DEMO_UPSTREAM in config.upstreams and config.upstreams[DEMO_UPSTREAM].base_url == (
        DEMO_BASE_URL
    )


def demo_route_targets(base: Config) -> list[RouteTargets]:
    """The start-up report of demo mode, from the config before the demo was added: a route
    the demo serves says so, and why each of its own targets is not used."""
    reports = []
    for report in route_targets(base):
        chain = base.tiers[report.tier].routes[report.route]
        if has_keyed_target(chain):
            reports.append(report)
            continue
        skipped = tuple(
            (m.name, skip_reason(m) or "keyless upstream: --demo uses only keyed targets")
            for m in chain
        )
        reports.append(RouteTargets(report.tier, report.route, (f"demo-{report.route}",), skipped))
    return reports
