"""The bridged endpoints count against the same quotas as chat completions, and say so in
their own API's error shape."""

from __future__ import annotations

import httpx

from tests.conftest import StartGateway
from tests.protocols.conftest import ROUTES


def test_one_quota_for_chat_responses_and_messages(start_gateway: StartGateway) -> None:
    tier = {"routes": ROUTES, "quotas": {"text_generation": {"requests_per_day": 2}}}
    gw = start_gateway({"free": tier})
    bearer = {"authorization": f"Bearer {gw.key()}"}
    chat = httpx.post(
        f"{gw.base_url}/chat/completions",
        headers=bearer,
        json={"model": "ok", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200
    first = httpx.post(
        f"{gw.base_url}/responses", headers=bearer, json={"model": "ok", "input": "hi"}
    )
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "0"
    refused = httpx.post(
        f"{gw.base_url}/responses", headers=bearer, json={"model": "ok", "input": "hi"}
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    messages = httpx.post(
        f"{gw.base_url}/messages",
        headers={"x-api-key": gw.key(), "anthropic-version": "2023-06-01"},
        json={"model": "ok", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert messages.status_code == 429
    assert messages.json()["type"] == "error"
    assert messages.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in messages.headers


def test_a_spent_budget_refuses_responses_and_messages(start_gateway: StartGateway) -> None:
    tier = {"routes": ROUTES, "budget": {"usd_per_day": 0.000001}}  # below any request's cost
    gw = start_gateway({"free": tier})
    responses = httpx.post(
        f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "ok", "input": "hi", "max_output_tokens": 5},
    )
    assert responses.status_code == 429, responses.text
    assert responses.json()["error"]["code"] == "budget_exceeded"
    messages = httpx.post(
        f"{gw.base_url}/messages",
        headers={"x-api-key": gw.key(), "anthropic-version": "2023-06-01"},
        json={"model": "ok", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert messages.status_code == 429
    assert messages.json()["type"] == "error"
    assert messages.json()["error"]["type"] == "rate_limit_error"
    assert "budget" in messages.json()["error"]["message"].lower()
