"""Issue 23 item 17: an upstream that fails after its first byte (a cut stream, an idle
timeout) counts in ``gateway_upstream_errors_total``, in ``gateway_streams_cut_total`` by model,
and against its model's breaker."""

import httpx

from tests.e2e.test_metrics import samples, scrape, value

TIERS = {
    "free": {"routes": {"text": ["drop", "ok"]}},
    "stalls": {"routes": {"text": ["stall", "ok"]}},
}
MESSAGES = [{"role": "user", "content": "hello"}]


def stream(gw, tier="free"):
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.key(tier)}"},
        json={"model": "text", "messages": MESSAGES, "stream": True},
        timeout=10,
    ) as answer:
        body = b"".join(answer.iter_bytes())
        return answer, body


def test_cut_streams_count_as_upstream_errors_and_open_the_breaker(start_gateway):
    gw = start_gateway(TIERS)  # the breaker opens after 3 failures
    for _ in range(3):
        answer, body = stream(gw)
        assert answer.headers["x-gateway-model"] == "drop"
        assert b'"error"' in body and body.endswith(b"data: [DONE]\n\n")
    after = samples(scrape(gw))
    assert (
        value(after, "gateway_upstream_errors_total", provider="mock", error_type="stream_cut") == 3
    )
    assert value(after, "gateway_streams_cut_total", model="drop", reason="stream_cut") == 3
    assert value(after, "gateway_circuit_state", model="drop") == 2
    answer, body = stream(gw)  # the open circuit skips "drop"
    assert answer.headers["x-gateway-model"] == "ok"
    assert b'"error"' not in body


def test_an_idle_timeout_after_the_first_byte_counts(start_gateway):
    gw = start_gateway(TIERS)
    answer, body = stream(gw, "stalls")
    assert answer.headers["x-gateway-model"] == "stall"
    assert b"idle timeout" in body
    after = samples(scrape(gw))
    kind = "stream_idle_timeout"
    assert value(after, "gateway_upstream_errors_total", provider="mock", error_type=kind) == 1
    assert value(after, "gateway_streams_cut_total", model="stall", reason=kind) == 1
    assert value(after, "gateway_streams_cut_total", model="drop", reason="stream_cut") == 0
