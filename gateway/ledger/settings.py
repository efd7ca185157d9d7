"""The ledger's options: tiers.yaml ``ledger:``, each overridden by its ``GATEWAY_LEDGER_*``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.model import LedgerOptions

TRUE_VALUES = {"1", "true", "yes", "on"}
DEFAULTS = LedgerOptions()


@dataclass(frozen=True)
class LedgerSettings:
    """``database_url`` None means no ledger: usage reads stay on the Redis stream."""

    database_url: str | None = None
    auto_migrate: bool = DEFAULTS.auto_migrate  # apply pending migrations at start
    ship: bool = DEFAULTS.ship  # run the shipper in the background of each gateway process
    retention_days: int = DEFAULTS.retention_days  # 0 keeps every partition
    rollup_retention_days: int = DEFAULTS.rollup_retention_days  # 0 keeps every rollup day
    batch: int = DEFAULTS.batch  # stream entries per insert
    claim_idle_ms: int = DEFAULTS.claim_idle_ms  # a pending entry this idle: a dead consumer's
    linger_ms: int = DEFAULTS.linger_ms  # after a short batch, the wait before the next read
    stream_cap: int = DEFAULTS.stream_cap  # settle's MAXLEN with the ledger on (a safety net)
    partitions_ahead: int = 7

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, file: LedgerOptions | None = None
    ) -> LedgerSettings:
        """``file`` (tiers.yaml ``ledger:``) gives the values; a set variable overrides one."""
        env = os.environ if env is None else env
        d = DEFAULTS if file is None else file
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            auto_migrate=_flag(env, "GATEWAY_LEDGER_AUTO_MIGRATE", d.auto_migrate),
            ship=_flag(env, "GATEWAY_LEDGER_SHIP", d.ship),
            retention_days=_int(env, "GATEWAY_LEDGER_RETENTION_DAYS", d.retention_days),
            rollup_retention_days=_int(
                env, "GATEWAY_LEDGER_ROLLUP_RETENTION_DAYS", d.rollup_retention_days
            ),
            batch=max(1, _int(env, "GATEWAY_LEDGER_BATCH", d.batch)),
            claim_idle_ms=max(100, _int(env, "GATEWAY_LEDGER_CLAIM_IDLE_MS", d.claim_idle_ms)),
            linger_ms=max(0, _int(env, "GATEWAY_LEDGER_LINGER_MS", d.linger_ms)),
            stream_cap=max(1, _int(env, "GATEWAY_LEDGER_STREAM_CAP", d.stream_cap)),
        )

    @property
    def enabled(self) -> bool:
        return self.database_url is not None

    @property
    def rollup_days_kept(self) -> int:
        """Days of rollups kept (0: all): never fewer than the records', whose days the
        analytics read from the rollups."""
        if self.retention_days <= 0 or self.rollup_retention_days <= 0:
            return 0
        return max(self.retention_days, self.rollup_retention_days)


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
