"""Tracing switched on: OpenTelemetry (``observe/otel.py``) is imported only then."""

from __future__ import annotations

from collections.abc import Callable

from gateway.proxy.context import RequestContext
from gateway.proxy.listeners import ignored
from gateway.proxy.trace_hooks import Tracer


def start_tracing(user_hash: Callable[[str], str], on_drop: Callable[[str, int], None]) -> Tracer:
    """The OpenTelemetry tracer, exporting as the ``OTEL_*`` variables say; ``MissingExtra``
    without the ``otel`` extra (``gateway serve`` says so before it starts)."""
    from gateway.observe import otel

    return otel.start(user_hash, on_drop)


class TraceEnd:
    """The listener that ends each request's spans after its last byte (tracing on only)."""

    started = relaying = ignored

    def finished(self, ctx: RequestContext) -> None:
        if ctx.trace is not None:
            ctx.trace.finish(ctx)
