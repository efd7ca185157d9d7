"""The tiers.yaml ``ledger:`` section (the usage ledger's options), read and validated."""

from __future__ import annotations

from gateway.config.model import LedgerOptions
from gateway.config.reader import Node

KEYS = {
    "auto_migrate",
    "ship",
    "retention_days",
    "rollup_retention_days",
    "batch",
    "claim_idle_ms",
    "linger_ms",
    "stream_cap",
}


def ledger_section(node: Node) -> LedgerOptions:
    """``ledger: {retention_days: 90, ship: false, ...}``; absent keys keep their defaults."""
    d = LedgerOptions()
    if not node.present() or not node.mapping(KEYS):
        return d
    return LedgerOptions(
        auto_migrate=node.get("auto_migrate").boolean(d.auto_migrate),
        ship=node.get("ship").boolean(d.ship),
        retention_days=_int(node, "retention_days", d.retention_days, 0),
        rollup_retention_days=_int(node, "rollup_retention_days", d.rollup_retention_days, 0),
        batch=_int(node, "batch", d.batch, 1),
        claim_idle_ms=_int(node, "claim_idle_ms", d.claim_idle_ms, 100),
        linger_ms=_int(node, "linger_ms", d.linger_ms, 0),
        stream_cap=_int(node, "stream_cap", d.stream_cap, 1),
    )


def _int(node: Node, key: str, default: int, minimum: int) -> int:
    value = node.get(key).integer(default, minimum=minimum)
    return default if value is None else value
