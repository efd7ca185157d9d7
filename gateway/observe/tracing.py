"""Tracing switched on or off: OpenTelemetry (``observe/otel.py``) is imported only when on."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from gateway.config.runtime import tracing_variable
from gateway.proxy.context import RequestContext
from gateway.proxy.trace_hooks import Tracer

OTEL_EXTRA = "otel"


def tracing_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why tracing, configured by ``env``, cannot start: its packages are not installed."""
    env = os.environ if env is None else env
    variable = tracing_variable(env)
    if variable is None:
        return None
    try:
        import gateway.observe.otel  # noqa: F401
    except ImportError as error:
        return (
            f"{variable} is set, but tracing needs the OpenTelemetry packages ({error.name} is "
            f"missing): pip install 'llm-gateway[{OTEL_EXTRA}]', or unset {variable}"
        )
    return None


def start_tracing(user_hash: Callable[[str], str], on_drop: Callable[[str, int], None]) -> Tracer:
    """The OpenTelemetry tracer, exporting as the ``OTEL_*`` variables say."""
    if problem := tracing_problem():
        raise RuntimeError(problem)
    from gateway.observe import otel

    return otel.start(user_hash, on_drop)


class TraceEnd:
    """The listener that ends each request's spans after its last byte (tracing on only)."""

    def started(self, ctx: RequestContext) -> None:
        pass

    def relaying(self, ctx: RequestContext) -> None:
        pass

    def finished(self, ctx: RequestContext) -> None:
        if ctx.trace is not None:
            ctx.trace.finish(ctx)
