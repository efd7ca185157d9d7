"""``gateway_stored_responses_total``: the Responses API's store counted by outcome, its
failures included (Redis stopped: an answer that could not be kept, a lookup that failed)."""

from __future__ import annotations

import httpx
import openai

from gateway.config.runtime import Runtime
from tests.conftest import StartGateway
from tests.e2e.test_metrics import samples, scrape, value
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES

NAME = "gateway_stored_responses_total"


def test_stored_responses_and_their_lookups_are_counted(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    gw = start_gateway({"free": {"routes": DEFAULT_ROUTES}}, runtime=Runtime(redis_url=redis.url))
    api = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    first = api.responses.create(model="ok", input="Hi")
    api.responses.create(model="ok", input="And then?", previous_response_id=first.id)
    api.responses.create(model="ok", input="Not kept", store=False)
    unknown = httpx.post(
        f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "ok", "input": "x", "previous_response_id": "resp_no_such_one"},
    )
    assert unknown.status_code == 404
    counted = samples(scrape(gw))
    assert value(counted, NAME, event="stored") == 2  # store: false keeps nothing
    assert value(counted, NAME, event="found") == 1
    assert value(counted, NAME, event="missing") == 1
    assert value(counted, NAME, event="store_failed") == 0

    redis.stop()
    try:
        answered = httpx.post(  # answered on the outage policy, then not kept
            f"{gw.base_url}/responses",
            headers={"authorization": f"Bearer {gw.key()}"},
            json={"model": "ok", "input": "during the outage"},
            timeout=30,
        )
        lookup = httpx.post(
            f"{gw.base_url}/responses",
            headers={"authorization": f"Bearer {gw.key()}"},
            json={"model": "ok", "input": "again", "previous_response_id": first.id},
            timeout=30,
        )
    finally:
        redis.start()
    assert answered.status_code == 200, answered.text
    assert lookup.status_code == 503
    counted = samples(scrape(gw))
    assert value(counted, NAME, event="store_failed") == 1
    assert value(counted, NAME, event="read_failed") == 1
    assert value(counted, NAME, event="stored") == 2
