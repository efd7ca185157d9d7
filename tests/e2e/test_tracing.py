"""OpenTelemetry traces from `gateway serve` (a real process: the SDK's settings are the
process's environment) into a local OTLP/HTTP receiver that decodes what it is sent."""

import gzip
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.test_serve import KEY, ROOT, Served
from tests.support import DEFAULT_ROUTES, MOCK_KEY, free_port, routes_doc, tiers_doc

PROMPT = "a secret prompt the traces must not hold"
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"


class Receiver:
    """POST /v1/traces: keeps each decoded ``ExportTraceServiceRequest`` and its raw bytes."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self.raw: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest()
                export.ParseFromString(body)
                receiver.raw.append(body)
                receiver.exports.append(export)
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def spans(self) -> list[Span]:
        return [
            span
            for export in self.exports
            for resource in export.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def wait_for_spans(self, count: int, timeout: float = 20) -> list[Span]:
        deadline = time.monotonic() + timeout
        while len(self.spans()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spans()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def attributes(span: Span) -> dict[str, object]:
    values: dict[str, object] = {}
    for item in span.attributes:
        value = item.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            values[item.key] = [v.string_value for v in value.array_value.values]
        else:
            values[item.key] = getattr(value, kind)
    return values


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def traced(tmp_path, upstream, receiver):
    """`gateway serve` exporting to ``receiver``: tier free falls back once (after retries)."""
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    routes = {**DEFAULT_ROUTES, "text": ["fail-503", "ok-b"]}
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc({"free": {"routes": routes}})))
    argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    served = Served(
        [*argv, "--port", str(free_port())],
        {
            "MOCK_KEY": MOCK_KEY,
            "GATEWAY_KEYS": f"{KEY}=free:alice",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "gateway-under-test",
        },
        tmp_path,
    )
    yield served
    served.stop()


def chat(served, **body):
    return httpx.post(
        served.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}", "traceparent": TRACEPARENT},
        json={"model": "text", "messages": [{"role": "user", "content": PROMPT}], **body},
        timeout=30,
    )


def test_a_fallback_is_one_server_span_over_sibling_attempt_spans(traced, receiver, upstream):
    response = chat(traced)
    assert response.status_code == 200
    assert response.headers["x-gateway-fallback"] == "true"
    spans = receiver.wait_for_spans(4)
    assert len(spans) == 4, spans
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    attempts = sorted(
        (s for s in spans if s.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    # the client's trace continues: its span is the server span's parent
    assert server.trace_id.hex() == CLIENT_TRACE_ID
    assert server.parent_span_id.hex() == CLIENT_SPAN_ID
    assert server.name == "chat text"
    # two tries of the failing model, then the fallback: siblings under the server span
    assert len(attempts) == 3
    for attempt in attempts:
        assert attempt.trace_id == server.trace_id
        assert attempt.parent_span_id == server.span_id
    tried = [attributes(a)["gen_ai.request.model"] for a in attempts]
    assert tried == ["mock/fail-503", "mock/fail-503", "mock/ok-b"]
    for failed in attempts[:2]:
        assert attributes(failed)["error.type"] == "http_503"
        assert attributes(failed)["http.response.status_code"] == 503
        assert failed.status.code == failed.status.STATUS_CODE_ERROR
    answered = attributes(attempts[2])
    assert answered["gen_ai.provider.name"] == answered["gen_ai.system"] == "mock"
    assert answered["gen_ai.response.model"] == "mock/ok-b"
    assert answered["gen_ai.operation.name"] == "chat"
    usage = response.json()["usage"]
    assert answered["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert answered["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert answered["gen_ai.response.finish_reasons"] == ["stop"]
    request = attributes(server)
    assert request["gen_ai.operation.name"] == "chat"
    assert request["gateway.endpoint"] == "chat.completions"
    assert request["gen_ai.request.model"] == "text"
    assert request["gen_ai.response.model"] == "mock/ok-b"
    assert request["gen_ai.provider.name"] == "mock"
    assert request["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert request["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert request["gen_ai.response.finish_reasons"] == ["stop"]
    assert request["gateway.tier"] == "free"
    assert request["gateway.route"] == "text"
    assert request["gateway.fallback"] is True
    assert request["gateway.attempts"] == 3
    assert request["gateway.cache_hit"] is False
    assert request["gateway.quota.decision"] == "admitted"
    assert request["http.response.status_code"] == 200
    assert request["gateway.user.hash"] != "alice" and len(request["gateway.user.hash"]) == 16
    # each upstream request carried its own attempt span as parent, in the client's trace
    sent = [
        r.headers["traceparent"] for r in upstream.requests if r.path.endswith("/chat/completions")
    ]
    assert sent == [f"00-{CLIENT_TRACE_ID}-{a.span_id.hex()}-01" for a in attempts]
    # no message contents, and the access log line names the trace
    assert not any(PROMPT.encode() in raw for raw in receiver.raw)
    answer = response.json()["choices"][0]["message"]["content"]
    assert not any(answer.encode() in raw for raw in receiver.raw)
    (line,) = [x for x in traced.log_lines() if x.get("event") == "request"]
    assert line["trace_id"] == CLIENT_TRACE_ID
    assert line["user"] == request["gateway.user.hash"]  # the same keyed hash
    resources = {
        a.key: a.value.string_value
        for export in receiver.exports
        for r in export.resource_spans
        for a in r.resource.attributes
    }
    assert resources["service.name"] == "gateway-under-test"


def test_a_stream_records_its_first_token_and_finish_reason(traced, receiver):
    with httpx.stream(
        "POST",
        traced.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "text", "messages": [{"role": "user", "content": PROMPT}], "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")
    spans = receiver.wait_for_spans(4)
    (server,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert server.parent_span_id == b""  # no traceparent sent: a new trace
    (first_token,) = [e for e in server.events if e.name == "gen_ai.first_token"]
    assert server.start_time_unix_nano < first_token.time_unix_nano < server.end_time_unix_nano
    assert attributes(server)["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes(server)["gen_ai.usage.output_tokens"] > 0
    answered = max(
        (s for s in spans if s.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    assert answered.end_time_unix_nano >= first_token.time_unix_nano  # it covers the relay
    assert not any(PROMPT.encode() in raw for raw in receiver.raw)


def test_sampling_follows_the_standard_variables(tmp_path, upstream, receiver):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    served = Served(
        [*argv, "--port", str(free_port())],
        {
            "MOCK_KEY": MOCK_KEY,
            "GATEWAY_KEYS": f"{KEY}=free:alice",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url + "/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_TRACES_SAMPLER": "always_off",
        },
        tmp_path,
    )
    try:
        response = chat(served)
        assert response.status_code == 200
        # not sampled: nothing exported, but the upstream still hears of the trace
        sent = upstream.requests[-1].headers["traceparent"]
        assert sent.startswith(f"00-{CLIENT_TRACE_ID}-") and sent.endswith("-00")
    finally:
        served.stop()  # the exporter flushes at shutdown
    assert receiver.spans() == []


def test_configured_without_the_extra_fails_with_one_line_naming_it(tmp_path):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    hide_otel = (
        "import sys; sys.modules['opentelemetry'] = None; "
        "from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {
        **os.environ,
        "MOCK_KEY": MOCK_KEY,
        "GATEWAY_KEYS": f"{KEY}=free:alice",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    }
    argv = [sys.executable, "-c", hide_otel, "serve", "--config-dir", str(tmp_path)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        "gateway: error: OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, "
        "so tracing needs opentelemetry.exporter.otlp.proto.http, which is not installed: "
        "pip install 'llm-gateway[otel]'"
    )


def test_tracing_off_imports_no_opentelemetry(tmp_path, upstream):
    """Without an OTLP endpoint the gateway serves without loading its tracer, the SDK's
    tracing or the exporter (redis-py may load the OpenTelemetry API for its own metrics)."""
    script = f"""
import sys, httpx
from gateway.app import create_app
from gateway.config.runtime import Runtime
from tests.support import ThreadedServer, build_config, routes_doc, tiers_doc
config = build_config(routes_doc({upstream.base_url!r}), tiers_doc(),
                      {{"GATEWAY_KEYS": "{KEY}=free:alice"}})
server = ThreadedServer(create_app(config, Runtime.from_env({{}})), gateway=True).start()
response = httpx.post(server.url + "/v1/chat/completions", json={{"model": "text",
    "messages": [{{"role": "user", "content": "hi"}}]}},
    headers={{"authorization": "Bearer {KEY}", "traceparent": "{TRACEPARENT}"}})
assert response.status_code == 200, response.text
server.stop()
loaded = ("gateway.observe.otel", "gateway.observe.span_export", "opentelemetry.sdk.trace",
          "opentelemetry.exporter.otlp")
print(sorted(name for name in sys.modules if name.startswith(loaded)))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "traceparent" not in upstream.requests[-1].headers


def test_the_access_log_has_no_trace_id_when_tracing_is_off(tmp_path, upstream):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    env = {
        "MOCK_KEY": MOCK_KEY,
        "GATEWAY_KEYS": f"{KEY}=free:alice",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_SDK_DISABLED": "true",
    }
    served = Served([*argv, "--port", str(free_port())], env, tmp_path)
    try:
        assert chat(served).status_code == 200
    finally:
        served.stop()
    (line,) = [x for x in served.log_lines() if x.get("event") == "request"]
    assert "trace_id" not in line
    assert orjson.dumps(line)  # a plain JSON line


def test_without_the_extra_only_the_tracer_modules_need_it():
    """Every module imports without OpenTelemetry but the tracer's two, which name the extra."""
    script = """
import sys
sys.modules["opentelemetry"] = None  # as an install without the otel extra
import importlib, json, pkgutil, gateway
failed = {}
for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
    if module.name == "gateway.__main__":
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as error:
        failed[module.name] = str(error)
print(json.dumps(failed))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    failed = orjson.loads(done.stdout)
    assert sorted(failed) == ["gateway.observe.otel", "gateway.observe.span_export"]
    for error in failed.values():
        assert "pip install 'llm-gateway[otel]'" in error
