"""The ledger's Prometheus metrics, on the gateway's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

FAILURE_KINDS = ("postgres", "redis", "unexpected")


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "gateway_ledger_lag_records",
            "Usage records in the Redis stream not yet committed to the ledger",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.stream_length = Gauge(
            "gateway_ledger_stream_records",
            "Entries in the usage stream (settle trims it at gateway_ledger_stream_cap_records)",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.stream_cap = Gauge(
            "gateway_ledger_stream_cap_records",
            "The usage stream's hard cap with the ledger on: lag above it loses records",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.shipped = Counter(
            "gateway_ledger_rows_shipped", "Rows newly committed to the ledger", registry=registry
        )
        self.inserts = Counter(
            "gateway_ledger_inserts",
            "Batches committed to the ledger, one insert statement each (rows per insert: "
            "gateway_ledger_rows_shipped over this)",
            registry=registry,
        )
        self.duplicates = Counter(
            "gateway_ledger_duplicates",
            "Stream entries shipped again and found already in the ledger",
            registry=registry,
        )
        self.rejected = Counter(
            "gateway_ledger_rejected",
            "Stream entries not shipped: not a JSON record, or older than the retention",
            registry=registry,
        )
        self.failures = Counter(
            "gateway_ledger_failures",
            "Shipping attempts that failed (retried), by kind: postgres, redis, unexpected",
            ["kind"],
            registry=registry,
        )
        for kind in FAILURE_KINDS:  # each series present from the start, at 0
            self.failures.labels(kind)
