"""Issue 10 #3: no probe stuck in half-open; the caller's own key never opens shared breakers."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import respx

from gateway.config.model import BreakerPolicy, RetryPolicy
from gateway.providers.openai import build_request
from gateway.proxy.attempt_outcome import AttemptFailed
from gateway.proxy.attempts import Attempter
from gateway.proxy.breaker import Breakers, State
from gateway.secret import Secret
from tests.support import build_config, routes_doc, tiers_doc

BASE = "http://up.test/v1"
URL = BASE + "/chat/completions"
OK = {"id": "x", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def models():
    return build_config(routes_doc(BASE), tiers_doc(), {}).models


def attempter(clock: Clock) -> tuple[Attempter, Breakers]:
    breakers = Breakers(BreakerPolicy(failures=2, cooldown_s=5, probe_timeout_s=60), clock)

    async def no_sleep(seconds: float) -> None:
        return None

    client = httpx.AsyncHTTPTransport()
    return Attempter(client, RetryPolicy(attempts=1), breakers, sleep=no_sleep), breakers


def build(model, path: str = "/chat/completions", key: str = "sk-system-123456789"):
    body = orjson.dumps({"model": model.upstream_model})
    return build_request(model, path, json_body=body, api_key=Secret(key), request_id="r1")


def test_a_probe_that_cannot_be_built_is_released_and_the_client_gets_400(models):
    clock = Clock()
    attempts, breakers = attempter(clock)
    breakers.record_failure("ok")
    breakers.record_failure("ok")
    clock.now += 5
    assert breakers.state("ok") is State.HALF_OPEN

    with pytest.raises(AttemptFailed) as failed:
        asyncio.run(attempts.run((models["ok"],), lambda m: build(m, "/chat\r\n"), buffered=True))
    assert failed.value.error.status == 400
    assert "sk-system" not in failed.value.error.message
    assert breakers.allow("ok")  # the half-open slot was given back


def test_a_header_refused_before_sending_is_the_clients_error_not_the_models(models):
    clock = Clock()
    attempts, breakers = attempter(clock)

    async def scenario() -> AttemptFailed:
        with respx.mock:
            respx.post(URL).mock(side_effect=httpx.LocalProtocolError("bad header"))
            try:
                await attempts.run((models["ok"],), build, buffered=True)
            except AttemptFailed as exc:
                return exc
        raise AssertionError("expected a failure")

    for _ in range(3):
        assert asyncio.run(scenario()).error.status == 400
    assert breakers.state("ok") is State.CLOSED


def test_a_lost_probe_is_taken_over_after_the_probe_timeout():
    clock = Clock()
    breakers = Breakers(BreakerPolicy(failures=1, cooldown_s=5, probe_timeout_s=60), clock)
    breakers.record_failure("m")
    clock.now += 5
    assert breakers.allow("m") and not breakers.allow("m")
    assert breakers.probe_age("m") == 0
    clock.now += 60
    assert breakers.probe_age("m") == 60
    assert breakers.allow("m")


@pytest.mark.parametrize("status", [401, 403, 429])
def test_the_callers_own_key_does_not_open_the_shared_breaker(models, status):
    clock = Clock()
    attempts, breakers = attempter(clock)

    async def call(own: bool) -> None:
        with respx.mock:
            respx.post(URL).mock(return_value=httpx.Response(status, json={"error": "no"}))
            with pytest.raises(AttemptFailed):
                await attempts.run((models["ok"],), build, buffered=True, own_credentials=own)

    for _ in range(5):
        asyncio.run(call(own=True))
    assert breakers.state("ok") is State.CLOSED
    if status == 429:  # the system key's rate limit still counts
        for _ in range(2):
            asyncio.run(call(own=False))
        assert breakers.state("ok") is State.OPEN


def test_a_replayed_send_is_on_the_attempt_record(models):
    attempts, _ = attempter(Clock())

    async def scenario():
        with respx.mock:
            answer = httpx.Response(200, json=OK, extensions={"gateway_replayed": True})
            respx.post(URL).mock(return_value=answer)
            return await attempts.run((models["ok"],), build, buffered=True)

    (record,) = asyncio.run(scenario()).records
    assert record.replayed and record.error_type is None
