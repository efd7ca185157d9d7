"""After a mix of traffic, every counter and histogram count moved by exactly what was sent."""

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.support import DEFAULT_ROUTES
from tests.test_deploy import (
    EXPORTED_METRIC_FAMILIES,
    LEDGER_METRIC_FAMILIES,
    dashboard_metric_families,
)

MESSAGES = [{"role": "user", "content": "hello there"}]
TIERS = {
    "free": {"routes": DEFAULT_ROUTES},
    "retry": {"routes": {"text": ["flaky", "ok-b"]}},
    "fallback": {"routes": {"text": ["notfound", "ok-b"]}},
    "tiny": {"routes": DEFAULT_ROUTES, "quotas": {"text_generation": {"requests_per_day": 1}}},
    "broken": {"routes": {"text": ["bad-400"]}},
}


def samples(text):
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(scrape, name, **labels):
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def gw(start_gateway):
    return start_gateway(TIERS)


def scrape(gw, token=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(gw.url + "/metrics", headers=headers)
    assert response.status_code == 200
    return response.text


def post(gw, tier, **body):
    return httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.key(tier)}"},
        json={"model": "text", "messages": MESSAGES, **body},
    )


def test_counters_move_by_exactly_the_traffic_sent(gw):
    before = samples(scrape(gw))
    assert post(gw, "free").status_code == 200
    assert post(gw, "free", stream=True).status_code == 200
    assert post(gw, "retry").status_code == 200
    assert post(gw, "fallback").status_code == 200
    assert post(gw, "tiny").status_code == 200
    assert post(gw, "tiny").status_code == 429
    assert post(gw, "broken").status_code == 400

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    deadline = time.monotonic() + 5
    while True:  # token and cost counters follow the usage records, settled just after
        after = samples(scrape(gw))
        output = delta(
            "gateway_tokens_total", type="output", model="ok", provider="mock", tier="free"
        )
        if output == 10 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    requests = "gateway_requests_total"
    chat = {"endpoint": "chat.completions"}
    assert delta(requests, **chat, model="ok", tier="free", provider="mock", status="200") == 2
    assert delta(requests, **chat, model="flaky", tier="retry", provider="mock", status="200") == 1
    assert (
        delta(requests, **chat, model="ok-b", tier="fallback", provider="mock", status="200") == 1
    )
    assert delta(requests, **chat, model="none", tier="tiny", provider="none", status="429") == 1
    assert delta(requests, **chat, model="none", tier="broken", provider="none", status="400") == 1
    assert delta("gateway_request_duration_seconds_count", endpoint="chat.completions") == 7
    assert delta("gateway_overhead_seconds_count", endpoint="chat.completions") == 7
    assert delta("gateway_upstream_duration_seconds_count", provider="mock") == 8
    assert delta("gateway_time_to_first_token_seconds_count", model="ok") == 1
    assert delta("gateway_time_per_output_token_seconds_count", model="ok") == 1
    assert delta("gateway_retries_total", model="flaky", provider="mock") == 1
    fallback = {"from_model": "notfound", "to_model": "ok-b", "reason": "error"}
    assert delta("gateway_fallbacks_total", **fallback) == 1
    assert delta("gateway_upstream_errors_total", provider="mock", error_type="http_503") == 1
    assert delta("gateway_upstream_errors_total", provider="mock", error_type="http_404") == 1
    assert delta("gateway_upstream_errors_total", provider="mock", error_type="http_400") == 1
    assert (
        delta(
            "gateway_quota_rejections_total", capability="text_generation", reason="quota_exceeded"
        )
        == 1
    )
    assert (
        delta("gateway_tokens_total", type="input", model="ok", provider="mock", tier="free") == 6
    )
    assert output == 10
    # 3 input tokens at $1/1M plus 5 output at $2/1M, twice
    cost = delta("gateway_cost_usd_total", model="ok", provider="mock", tier="free")
    assert cost == pytest.approx(26e-6)
    assert value(after, "gateway_inflight_requests") == 0
    assert value(after, "gateway_open_streams") == 0
    assert value(after, "gateway_circuit_state", model="flaky") == 0


def test_every_exported_family_is_in_a_live_scrape_and_the_dashboard_uses_only_those(gw):
    post(gw, "free")
    live = {family.name for family in text_string_to_metric_families(scrape(gw))}
    # the text parser names counters without their _total suffix
    live |= {name + "_total" for name in live}
    assert set(EXPORTED_METRIC_FAMILIES) - LEDGER_METRIC_FAMILIES <= live  # no DATABASE_URL here
    assert dashboard_metric_families() - LEDGER_METRIC_FAMILIES <= live


def test_metrics_token_protects_the_scrape(start_gateway):
    gw = start_gateway(TIERS, runtime=Runtime(metrics_token=Secret("scrape-me")))
    assert httpx.get(gw.url + "/metrics").status_code == 401
    assert scrape(gw, "scrape-me").startswith("# HELP")


def test_health_readiness_and_provider_view(start_gateway):
    gw = start_gateway(TIERS, runtime=Runtime(admin_token=Secret("admin-xyz")))
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
    post(gw, "retry")
    assert httpx.get(gw.base_url + "/providers").status_code == 401
    view = httpx.get(
        gw.base_url + "/providers", headers={"authorization": "Bearer admin-xyz"}
    ).json()["data"]
    flaky = next(entry for entry in view if entry["model"] == "flaky")
    assert flaky["circuit"] == "closed" and flaky["recent_attempts"] == 2
    assert flaky["error_rate"] == 0.5
