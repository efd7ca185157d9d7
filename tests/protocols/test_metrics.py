"""The bridged endpoints' requests, tokens and fallbacks are in /metrics, labelled by endpoint."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningGateway

Key = tuple[str, tuple[tuple[str, str], ...]]


def _samples(gw: RunningGateway) -> dict[Key, float]:
    values: dict[Key, float] = {}
    for family in text_string_to_metric_families(httpx.get(gw.url + "/metrics").text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _sum(samples: dict[Key, float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


def test_requests_tokens_and_fallbacks_counted(gateway: RunningGateway) -> None:
    bearer = {"authorization": f"Bearer {gateway.key()}"}
    anthropic = {"x-api-key": gateway.key(), "anthropic-version": "2023-06-01"}
    turn: dict[str, Any] = {"max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    before = _samples(gateway)
    for stream in (False, True):
        answer = httpx.post(
            f"{gateway.base_url}/responses",
            headers=bearer,
            json={"model": "ok", "input": "Hi", "stream": stream},
        )
        assert answer.status_code == 200
        answer = httpx.post(
            f"{gateway.base_url}/messages",
            headers=anthropic,
            json={"model": "ok", **turn, "stream": stream},
        )
        assert answer.status_code == 200
    fallback = httpx.post(
        f"{gateway.base_url}/responses", headers=bearer, json={"model": "code", "input": "Hi"}
    )
    assert fallback.headers["x-gateway-fallback"] == "true"
    deadline = time.monotonic() + 5
    while True:  # token counters follow the usage records, settled just after the answer
        after = _samples(gateway)
        output = _sum(after, "gateway_tokens_total", type="output")
        if output - _sum(before, "gateway_tokens_total", type="output") >= 25:
            break
        assert time.monotonic() < deadline, "the output tokens were not all counted"
        time.sleep(0.05)

    def moved(name: str, **labels: str) -> float:
        return _sum(after, name, **labels) - _sum(before, name, **labels)

    assert moved("gateway_requests_total", endpoint="responses", status="200") == 3
    assert moved("gateway_requests_total", endpoint="messages", status="200") == 2
    assert moved("gateway_fallbacks_total") == 1
    # five answers of five words each, whatever the endpoint or the stream
    assert moved("gateway_tokens_total", type="output") == 25
