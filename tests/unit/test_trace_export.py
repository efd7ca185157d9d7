"""The span exporter's bounded queue: every span handed in is either exported or counted as
dropped (``gateway_trace_spans_dropped_total``)."""

import threading

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.observe.span_export import DropCountingProcessor


class StuckExporter(SpanExporter):
    """Holds its first export until released; fails when told to."""

    def __init__(self, result=SpanExportResult.SUCCESS):
        self.release = threading.Event()
        self.exported = 0
        self.result = result

    def export(self, spans):
        self.release.wait(10)
        self.exported += len(spans)
        return self.result

    def shutdown(self):
        self.release.set()


def run_spans(exporter, count, capacity):
    drops = []
    processor = DropCountingProcessor(
        exporter, capacity, lambda reason, n: drops.append((reason, n))
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for index in range(count):
        tracer.start_span(f"span {index}").end()
    exporter.release.set()
    provider.force_flush()
    provider.shutdown()
    return drops


def test_a_full_queue_drops_spans_and_counts_each():
    exporter = StuckExporter()
    drops = run_spans(exporter, 50, capacity=4)
    dropped = sum(n for reason, n in drops if reason == "queue_full")
    assert dropped >= 50 - 2 * 4  # at most a queue and one batch in the exporter's hands
    assert exporter.exported + dropped == 50


def test_nothing_is_counted_when_the_queue_keeps_up():
    exporter = StuckExporter()
    exporter.release.set()
    assert run_spans(exporter, 10, capacity=64) == []
    assert exporter.exported == 10


def test_failed_exports_are_counted():
    exporter = StuckExporter(SpanExportResult.FAILURE)
    exporter.release.set()
    drops = run_spans(exporter, 3, capacity=64)
    assert sum(n for reason, n in drops if reason == "export_failed") == 3


def test_the_sdks_queue_is_swapped_for_the_counting_one():
    """The exact count needs the SDK's queue where 1.45 keeps it; an SDK that moves it gets the
    estimate instead, and this test says so."""
    processor = DropCountingProcessor(StuckExporter(), 8, lambda reason, n: None)
    try:
        assert processor._exact
    finally:
        processor.shutdown()
