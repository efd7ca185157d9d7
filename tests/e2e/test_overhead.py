"""``x-gateway-overhead-ms`` on every answer the pipeline gives (JSON, stream, error, cache hit)
and ``gateway_overhead_seconds``: the gateway's own time, not the upstream's."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.store.factory import create_store
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

UPSTREAM_WAIT_S = 0.6  # the slow model's time to its status line
OVERHEAD = "x-gateway-overhead-ms"
MESSAGES = [{"role": "user", "content": "how long did you take?"}]
TIERS = {
    "free": {"routes": {**DEFAULT_ROUTES, "text": ["slow-first"]}},
    "paced": {"routes": {**DEFAULT_ROUTES, "text": ["slow"]}},  # 20 words, 20 ms apart
    "cached": {"routes": DEFAULT_ROUTES, "cache": {"text": {"ttl_s": 60}}},
    "broken": {"routes": {**DEFAULT_ROUTES, "text": ["bad-400"]}},
}


@pytest.fixture
def gw(upstream):
    routes = routes_doc(upstream.base_url, first_byte_timeout_s=3.0)
    routes["models"]["slow-first"] = {
        **routes["models"]["ok"],
        "model": f"mock/slowfirst-{UPSTREAM_WAIT_S}",
    }
    keys = {tier: f"sk-test-{tier}-0123456789" for tier in TIERS}
    env = {"GATEWAY_KEYS": ",".join(f"{k}={t}:user-{t}" for t, k in keys.items())}
    config = build_config(routes, tiers_doc(TIERS), env)
    metrics = Metrics()
    app = create_app(config, Runtime(), store=create_store(None, config.settings), metrics=metrics)
    server = ThreadedServer(app, gateway=True).start()
    server.keys = keys
    yield server
    server.stop()


def chat(gw, tier, key=None, **body):
    return httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key or gw.keys[tier]}"},
        json={"model": "text", "messages": MESSAGES, **body},
        timeout=30,
    )


def overhead_ms(response):
    return float(response.headers[OVERHEAD])


def overhead_histogram(gw):
    text = httpx.get(gw.url + "/metrics").text
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_overhead_seconds":
            for sample in family.samples:
                if sample.labels.get("endpoint") == "chat.completions":
                    found[sample.name.rpartition("_")[2]] = sample.value
    return found.get("count", 0.0), found.get("sum", 0.0)


def test_a_json_answer_excludes_the_upstreams_wait(gw):
    response = chat(gw, "free")
    assert response.status_code == 200
    elapsed_ms = response.elapsed.total_seconds() * 1000
    assert elapsed_ms >= UPSTREAM_WAIT_S * 1000
    assert 0 < overhead_ms(response) < elapsed_ms - UPSTREAM_WAIT_S * 1000 + 1


def test_a_stream_has_it_with_its_first_bytes_excluding_its_pacing(gw):
    with httpx.stream(
        "POST",
        gw.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {gw.keys['paced']}"},
        json={"model": "text", "messages": MESSAGES, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        overhead = overhead_ms(response)  # in the headers, before the body has come
        body = b"".join(response.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")
    paced_ms = 19 * 20
    assert response.elapsed.total_seconds() * 1000 >= paced_ms
    assert 0 < overhead < paced_ms  # the stream's own pacing is not the gateway's


def test_errors_have_it(gw):
    refused = chat(gw, "free", key="sk-not-a-key-0000000000")
    assert refused.status_code == 401
    assert overhead_ms(refused) > 0
    upstream_refused = chat(gw, "broken")
    assert upstream_refused.status_code == 400
    assert overhead_ms(upstream_refused) > 0
    bad_body = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {gw.keys['free']}", "content-type": "application/json"},
        content=b"{not json",
    )
    assert bad_body.status_code == 400
    assert overhead_ms(bad_body) > 0


def test_a_cache_hit_has_it(gw, upstream):
    first, second = chat(gw, "cached"), chat(gw, "cached")
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
    assert overhead_ms(first) > 0 and overhead_ms(second) > 0
    assert upstream.count("mock/ok") == 1


def test_the_histogram_counts_each_answer_with_the_headers_figure(gw):
    before_count, before_sum = overhead_histogram(gw)
    answers = [chat(gw, "free"), chat(gw, "broken"), chat(gw, "cached"), chat(gw, "cached")]
    count, total = overhead_histogram(gw)
    assert count - before_count == len(answers)
    expected = sum(overhead_ms(answer) for answer in answers) / 1000
    assert total - before_sum == pytest.approx(expected, abs=0.002)  # header rounded to µs
    assert total - before_sum < UPSTREAM_WAIT_S  # the slow upstream's wait is not in it


@pytest.fixture
def small(upstream, tmp_path, monkeypatch):
    """A gateway whose body limit is 1 KB (its file uploads: 1 MB)."""
    monkeypatch.setenv("GATEWAY_FILES_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("GATEWAY_FILES_MAX_MB", "1")
    keys = {"free": "sk-test-free-0123456789"}
    env = {"GATEWAY_KEYS": f"{keys['free']}=free:user-free"}
    tiers = tiers_doc({"free": {"routes": DEFAULT_ROUTES}}, settings={"max_body_mb": 0.001})
    config = build_config(routes_doc(upstream.base_url), tiers, env)
    app = create_app(
        config, Runtime(), store=create_store(None, config.settings), metrics=Metrics()
    )
    server = ThreadedServer(app, gateway=True).start()
    server.keys = keys
    yield server
    server.stop()


def test_answers_given_before_any_pipeline_have_it(small):
    auth = {"authorization": f"Bearer {small.keys['free']}"}
    answers = {
        "unknown POST": httpx.post(small.url + "/v1/nowhere", headers=auth, json={}),
        "unknown GET": httpx.get(small.url + "/v1/nowhere", headers=auth),
        "wrong method": httpx.delete(small.url + "/v1/chat/completions", headers=auth),
        "body limit (chunked)": httpx.post(
            small.url + "/v1/chat/completions",
            headers={**auth, "content-type": "application/json"},
            content=iter([b'{"model": "text", "messages": [', b" " * 4096, b"]}"]),
        ),
        "body limit (routed)": httpx.post(
            small.url + "/v1/quota/requests", headers=auth, content=b"x" * 4096
        ),
        "upload cap": httpx.post(
            small.url + "/v1/files",
            headers=auth,
            files={"file": ("big.jsonl", b"x" * (1024 * 1024 + 1))},
            data={"purpose": "user_data"},
        ),
        "health": httpx.get(small.url + "/healthz"),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "unknown POST": 404,
        "unknown GET": 404,
        "wrong method": 405,
        "body limit (chunked)": 413,
        "body limit (routed)": 413,
        "upload cap": 413,
        "health": 200,
    }
    for name, answer in answers.items():
        assert overhead_ms(answer) > 0, name
