"""Issue 23 item 20: an upstream reporting absurd usage (10,000,000 prompt and completion
tokens) is clamped to what the request could produce, flagged and counted, and the user is
not locked out by it."""

import time

import httpx
import openai
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.e2e.test_metrics import samples, scrape, value

ADMIN = "admin-token-for-tests-0123456789abcdef"
TIERS = {
    "free": {
        "routes": {"text": ["absurd"]},
        "quotas": {"text_generation": {"requests_per_day": 100, "tokens_per_day": 200_000}},
    }
}
MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def gw(start_gateway, redis):
    return start_gateway(TIERS, runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))


def records(gw, count):
    deadline = time.monotonic() + 5
    while True:
        response = httpx.get(
            gw.base_url + "/usage",
            params={"from": "2020-01-01", "to": "2100-01-01"},
            headers={"authorization": f"Bearer {gw.key()}"},
        )
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_absurd_upstream_usage_is_clamped_flagged_and_counted(gw):
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="text", messages=MESSAGES, max_tokens=2000)
    stream = client.chat.completions.create(
        model="text",
        messages=MESSAGES,
        max_tokens=300,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass
    found = records(gw, 3)
    assert len(found) == 3
    by_cap = sorted(found, key=lambda r: r["completion_tokens"])
    assert [r["completion_tokens"] for r in by_cap] == [600, 2000, 2000]
    for record in found:
        assert record["usage_flagged"] is True
        # the prompt is bounded by the body's bytes plus an allowance, far below 10**7
        assert 0 < record["prompt_tokens"] < 20_000
    # a free user is not locked out for the day: the next request is still admitted
    client.chat.completions.create(model="text", messages=MESSAGES, max_tokens=10)
    after = samples(scrape(gw))
    assert value(after, "gateway_usage_clamped_total", model="absurd", provider="mock") >= 3
