"""Issue 23 item 18: ``gateway_fallbacks_total`` agrees with the answers: every request served
by a model other than its chain's first counts, breaker skips included, with the reason."""

import httpx

from tests.e2e.test_metrics import samples, scrape

TIERS = {"free": {"routes": {"text": ["fail-500", "ok"]}}}
MESSAGES = [{"role": "user", "content": "hello"}]


def test_every_answer_from_a_later_model_counts_as_a_fallback(start_gateway):
    gw = start_gateway(TIERS)  # the breaker opens after 3 failures, cools down for 0.5 s
    served = []
    for _ in range(6):
        answer = httpx.post(
            gw.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {gw.key()}"},
            json={"model": "text", "messages": MESSAGES},
        )
        assert answer.status_code == 200
        served.append(answer.headers["x-gateway-fallback"])
    assert served == ["true"] * 6
    counted = {
        labels: count
        for (name, labels), count in samples(scrape(gw)).items()
        if name == "gateway_fallbacks_total"
    }
    assert sum(counted.values()) == 6, counted
    by_reason = {dict(labels)["reason"]: count for labels, count in counted.items()}
    assert by_reason.get("breaker_open", 0) >= 3, counted
    assert by_reason.get("error", 0) >= 1, counted
    for labels in counted:
        assert dict(labels)["from_model"] == "fail-500" and dict(labels)["to_model"] == "ok"
