"""Spans out through the SDK's bounded batch processor, every span it drops counted."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gateway.extras import OTEL, MissingExtra

try:  # imported only with tracing configured
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
except ImportError as error:
    raise MissingExtra(OTEL) from error

OnDrop = Callable[[str, int], None]  # (reason, spans)


class DropCountingExporter(SpanExporter):
    """The exporter, counting the spans it took and those it failed to deliver."""

    def __init__(self, exporter: SpanExporter, on_drop: OnDrop) -> None:
        self._exporter = exporter
        self._on_drop = on_drop
        self.taken = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.taken += len(spans)
        result = self._exporter.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self._on_drop("export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class DropCountingProcessor(SpanProcessor):
    """The SDK's ``BatchSpanProcessor`` (export on its own thread, bounded queue), counting
    the spans it drops when its queue is full.

    The SDK's queue is a ``deque`` that evicts its oldest span when a span comes to a full
    queue. It is swapped for a ``CountingQueue`` that counts each eviction, adding and taking
    under one lock so the count is exact whatever the export thread does. Should a future SDK
    keep its queue elsewhere, the count falls back to an estimate: spans handed in, less what
    the exporter took and what was dropped already (one drop too many when the export thread
    has taken spans off the queue but not yet handed them to the exporter)."""

    def __init__(self, exporter: SpanExporter, capacity: int, on_drop: OnDrop) -> None:
        self._exporter = DropCountingExporter(exporter, on_drop)
        batch = min(capacity, int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512))
        self._batch = BatchSpanProcessor(
            self._exporter, max_queue_size=capacity, max_export_batch_size=batch
        )
        self._capacity = capacity
        self._on_drop = on_drop
        self._queued = 0
        self._dropped = 0
        self._exact = _count_evictions(self._batch, capacity, lambda: on_drop("queue_full", 1))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if not self._exact:
            if self._queued - self._exporter.taken - self._dropped >= self._capacity:
                self._dropped += 1
                self._on_drop("queue_full", 1)
            self._queued += 1
        self._batch.on_end(span)

    def shutdown(self) -> None:
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)


class CountingQueue(deque[Any]):
    """A bounded ``deque`` whose spans are added (on any thread) and taken (by the export
    thread) under one lock, each span it evicts counted."""

    def __init__(self, capacity: int, on_evict: Callable[[], None]) -> None:
        super().__init__((), capacity)
        self._lock = threading.Lock()
        self._on_evict = on_evict

    def appendleft(self, item: Any) -> None:
        with self._lock:
            evicts = len(self) == self.maxlen
            super().appendleft(item)
        if evicts:
            self._on_evict()

    def pop(self) -> Any:  # type: ignore[override]  # deque.pop takes no index
        with self._lock:
            return super().pop()


def _count_evictions(
    processor: BatchSpanProcessor, capacity: int, on_evict: Callable[[], None]
) -> bool:
    """Swap the SDK's empty queue for a ``CountingQueue``; False if it is not where the SDK
    (1.45 here) keeps it: ``_batch_processor._queue``, a bounded ``deque`` (private)."""
    inner = getattr(processor, "_batch_processor", None)
    queue = getattr(inner, "_queue", None)
    if type(queue) is not deque or queue.maxlen != capacity or queue:
        return False
    inner._queue = CountingQueue(capacity, on_evict)  # type: ignore[union-attr]
    return True
