"""The batch runner's reports counted into the Prometheus metrics (its lines and queue)."""

from __future__ import annotations

from gateway.observe.metrics import Metrics


class BatchMetrics:
    """A ``batches.observer.BatchObserver`` that counts into ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def line_answered(self, endpoint: str, outcome: str) -> None:
        m = self._metrics
        m.child(m.batch_lines, endpoint, outcome).inc()

    def batch_ended(self, endpoint: str, status: str) -> None:
        m = self._metrics
        m.child(m.batches_ended, endpoint, status).inc()

    def looked(self, waiting: int, in_flight: int, paused: int) -> None:
        m = self._metrics
        m.batch_lines_waiting.set(waiting)
        m.batch_lines_in_flight.set(in_flight)
        m.batches_paused.set(paused)
