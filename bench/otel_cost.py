"""CPU cost of tracing per request, in process: the gateway's tracer hooks for one chat request
(server span, one attempt span with its traceparent, the answer's attributes, the end), with
spans encoded to OTLP protobuf as the exporter would, but not sent.

    python bench/otel_cost.py            # off, 1% and 100% sampling; best of 7 loops each

With tracing off there is no tracer to measure here (the pipeline holds ``None``); the
end-to-end figures, off included, come from the HTTP load:
``bench/variants.py --variants otel_off,otel_1,otel_100``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = {"1%": ("parentbased_traceidratio", "0.01"), "100%": ("always_on", "")}
REQUESTS, LOOPS = 3000, 7


def measure(sampler: str, ratio: str) -> float:
    """µs per request for one sampler, in a fresh process (the SDK reads the variables once)."""
    os.environ.update(OTEL_TRACES_SAMPLER=sampler, OTEL_TRACES_SAMPLER_ARG=ratio)
    import httpx
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from gateway.config.load import parse_config
    from gateway.observe import otel
    from gateway.observe.span_export import DropCountingProcessor
    from gateway.proxy.attempt_outcome import Opened
    from gateway.proxy.context import RequestContext
    from gateway.proxy.routing import CHAT

    class Encoding(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(DropCountingProcessor(Encoding(), 2048, lambda r, n: None))
    tracer = otel.OtelTracer(provider, lambda user: user)
    upstream = {"base_url": "http://127.0.0.1:9/v1"}
    routes = {"upstreams": {"u": upstream}, "models": {"m": {"upstream": "u", "model": "up/m"}}}
    config = parse_config(routes, {"tiers": {"t": {"routes": {"text": ["m"]}}}}, {}, [])
    model = config.models["m"]
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions", json={})
    opened = Opened(model, httpx.Response(200), b"", None)
    answer = {"choices": [{"finish_reason": "stop"}], "model": "up/m"}
    best = float("inf")
    for _ in range(LOOPS):
        started = time.perf_counter()
        for _ in range(REQUESTS):
            ctx = RequestContext("req", CHAT)
            trace = tracer.begin({}, ctx)
            trace.attempt(model, request).ended(opened)
            trace.answer(answer)
            ctx.ended = time.perf_counter()
            trace.finish(ctx)
        provider.force_flush()  # the encoding's cost counts too
        best = min(best, time.perf_counter() - started)
    provider.shutdown()
    return best / REQUESTS * 1e6


def main() -> int:
    if len(sys.argv) == 3:
        print(f"{measure(sys.argv[1], sys.argv[2]):.1f}")
        return 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, (sampler, ratio) in SAMPLERS.items():
        argv = [sys.executable, __file__, sampler, ratio]
        cost = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
        print(f"tracing={name} sampler={sampler} us_per_request={cost.strip()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
