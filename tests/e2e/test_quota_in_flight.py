"""GET /v1/quota while a stream is in flight, through the gateway on a real redis-server: the
request's reservation shows as ``reserved``, never as ``used``, and once the stream ends its
settled use replaces it (issue 26, item 8)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai

from gateway.config.runtime import Runtime

MESSAGES = [{"role": "user", "content": "hello there"}]
TIERS = {
    "free": {
        "routes": {"text": ["endless"]},  # ~500 ms between chunks: in flight until closed
        "max_tokens": 100,
        "quotas": {"text_generation": {"requests_per_day": 50, "tokens_per_day": 10_000}},
    }
}


def text_quota(gw: Any) -> dict[str, Any]:
    answer = httpx.get(
        gw.base_url + "/quota", headers={"authorization": f"Bearer {gw.key()}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["capabilities"]["text_generation"]
    return found


def settled(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_stream_in_flight_is_reserved_not_used(start_gateway: Any, redis: Any) -> None:
    gw = start_gateway(TIERS, runtime=Runtime(redis_url=redis.url))
    before = text_quota(gw)
    assert before["requests"] == {"limit": 50, "used": 0, "reserved": 0, "remaining": 50}
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as sdk:
        stream = sdk.chat.completions.create(model="text", messages=MESSAGES, stream=True)
        first = next(iter(stream))
        assert first.choices or first.model_extra
        during = [text_quota(gw) for _ in range(3)]
        stream.close()
    for view in during:
        assert view["requests"]["used"] == 0 and view["requests"]["reserved"] == 1, view
        tokens = view["tokens"]
        assert tokens["used"] == 0 and tokens["reserved"] > 0, view
        assert tokens["remaining"] == 10_000 - tokens["reserved"]
        assert view["requests"]["remaining"] == 49

    # the cut stream settles: its reservation is given back, what it used is counted once
    assert settled(lambda: text_quota(gw)["requests"]["reserved"] == 0)
    after = text_quota(gw)
    assert after["requests"] == {"limit": 50, "used": 1, "reserved": 0, "remaining": 49}
    assert after["tokens"]["reserved"] == 0
    assert 0 < after["tokens"]["used"] < during[0]["tokens"]["reserved"]
    assert after["tokens"]["remaining"] == 10_000 - after["tokens"]["used"]
