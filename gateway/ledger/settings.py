"""The ledger's options, read once from the environment (``DATABASE_URL``, ``GATEWAY_LEDGER_*``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

TRUE_VALUES = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class LedgerSettings:
    """``database_url`` None means no ledger: usage reads stay on the Redis stream."""

    database_url: str | None = None
    auto_migrate: bool = True  # apply pending migrations at start
    ship: bool = True  # run the shipper in the background of each gateway process
    retention_days: int = 400  # 0 keeps every partition
    batch: int = 1000  # stream entries per insert
    claim_idle_ms: int = 30_000  # a pending entry this idle belonged to a dead consumer
    stream_cap: int = 10_000_000  # settle's MAXLEN with the ledger on (a safety net)
    partitions_ahead: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LedgerSettings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            auto_migrate=_flag(env, "GATEWAY_LEDGER_AUTO_MIGRATE", d.auto_migrate),
            ship=_flag(env, "GATEWAY_LEDGER_SHIP", d.ship),
            retention_days=_int(env, "GATEWAY_LEDGER_RETENTION_DAYS", d.retention_days),
            batch=max(1, _int(env, "GATEWAY_LEDGER_BATCH", d.batch)),
            claim_idle_ms=max(100, _int(env, "GATEWAY_LEDGER_CLAIM_IDLE_MS", d.claim_idle_ms)),
            stream_cap=max(1, _int(env, "GATEWAY_LEDGER_STREAM_CAP", d.stream_cap)),
        )

    @property
    def enabled(self) -> bool:
        return self.database_url is not None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    return default if value is None or value == "" else value.strip().lower() in TRUE_VALUES


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None
