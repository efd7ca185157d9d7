"""Process-level options from the environment (YAML holds everything else)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.extras import OTEL
from gateway.secret import Secret


@dataclass(frozen=True)
class Runtime:
    admin_token: Secret | None = None
    metrics_token: Secret | None = None
    redis_url: str | None = None
    transport: str = "native"  # or "aiohttp", "httpx": the upstream client's transport
    max_upstream_connections: int = 10_000  # per worker; each open stream holds one
    log_bodies: bool = False  # debug only: puts prompts into the access log
    tracing: bool = False  # OpenTelemetry traces exported (the OTEL_* variables configure them)
    # False: the usage rollups are folded by ``gateway usage roll``, not in the serving process
    roll_usage: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Runtime:
        env = os.environ if env is None else env
        return cls(
            admin_token=_secret(env.get("GATEWAY_ADMIN_TOKEN")),
            metrics_token=_secret(env.get("GATEWAY_METRICS_TOKEN")),
            redis_url=sentinel_url(env) or env.get("REDIS_URL") or None,
            transport=env.get("GATEWAY_UPSTREAM_TRANSPORT", "native"),
            max_upstream_connections=int(env.get("GATEWAY_MAX_UPSTREAM_CONNECTIONS", "10000")),
            log_bodies=env.get("GATEWAY_DEBUG_LOG_BODIES", "").lower() in ("1", "true", "yes"),
            tracing=OTEL.turned_on(env),
            roll_usage=env.get("GATEWAY_USAGE_ROLL", "").lower() not in ("0", "false", "no"),
        )


def sentinel_url(env: Mapping[str, str]) -> str | None:
    """``REDIS_SENTINELS`` (host:port,...) and ``REDIS_SENTINEL_MASTER`` (default "mymaster")
    as one ``redis+sentinel://`` URL; credentials and database come from ``REDIS_URL``'s."""
    sentinels = env.get("REDIS_SENTINELS", "").strip()
    if not sentinels:
        return None
    master = env.get("REDIS_SENTINEL_MASTER") or "mymaster"
    base = urlsplit(env.get("REDIS_URL") or "redis://")
    userinfo = base.netloc.rpartition("@")[0]
    scheme = "rediss+sentinel" if base.scheme.startswith("rediss") else "redis+sentinel"
    database = base.path.strip("/") or "0"
    netloc = f"{userinfo}@{sentinels}" if userinfo else sentinels
    return f"{scheme}://{netloc}/{master}/{database}"


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None
