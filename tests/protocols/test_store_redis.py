"""Stored responses in Redis: kept across gateways sharing it under the owner's key with the
configured TTL, and a store outage is a 503."""

from __future__ import annotations

import httpx
import openai

from gateway.config.runtime import Runtime
from tests.conftest import StartGateway
from tests.protocols.conftest import ROUTES
from tests.redis_fixture import RedisServer, command


def test_in_redis_and_outage(start_gateway: StartGateway, redis: RedisServer) -> None:
    tiers = {"free": {"routes": ROUTES}}
    one = start_gateway(tiers, runtime=Runtime(redis_url=redis.url))
    two = start_gateway(tiers, runtime=Runtime(redis_url=redis.url))
    created = openai.OpenAI(base_url=one.base_url, api_key=one.key()).responses.create(
        model="ok", input="Hi"
    )
    other = openai.OpenAI(base_url=two.base_url, api_key=two.key(), max_retries=0)
    assert other.responses.retrieve(created.id).output_text == created.output_text
    [key] = command(redis.port, "KEYS", f"*:resp:{created.id}").split(b"\r\n")[2:-1:2]
    assert key.startswith(b"gw:{u:user-free}:")  # under its owner, never the id alone
    ttl = int(command(redis.port, "TTL", key.decode())[1:-2])
    assert 29 * 86400 < ttl <= 30 * 86400  # settings.responses_ttl_days: 30 by default
    redis.stop()
    try:
        answer = httpx.post(
            f"{two.base_url}/responses",
            headers={"authorization": f"Bearer {two.key()}"},
            json={"model": "ok", "input": "again", "previous_response_id": created.id},
        )
    finally:
        redis.start()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "store_unavailable"
