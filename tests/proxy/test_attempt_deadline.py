"""The request's deadline, when it cuts the last attempt, is reported as the deadline.

uvloop's clock counts whole milliseconds, so a limit armed at the deadline can end up to ~1 ms
before ``time.monotonic()`` reaches it: the chain must not take that cut for an upstream's
failure (it answered "All upstream attempts failed" in one CI run, without the deadline)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import uvloop

from gateway.config.model import BreakerPolicy, Model, RetryPolicy, Upstream
from gateway.errors import DeadlineExceeded
from gateway.proxy.attempt_outcome import AttemptFailed
from gateway.proxy.attempts import Attempter
from gateway.proxy.breaker import Breakers


class HungUpstream(httpx.AsyncBaseTransport):
    """An upstream that takes every request and never answers."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def model(name: str) -> Model:
    upstream = Upstream(name, "http://hung.invalid/v1", None, first_byte_timeout_s=10)
    return Model(name, upstream, name, "text")


def busy_build(chosen: Model) -> httpx.Request:
    time.sleep(0.0004)  # some work before the attempt: its limit starts off a millisecond
    return httpx.Request("POST", chosen.upstream.base_url + "/chat/completions", json={})


async def cut_chains(runs: int) -> list[AttemptFailed]:
    failures = []
    for run in range(runs):
        deadline_s = 0.005 + (run % 10) * 0.0001  # deadlines at every tenth of a millisecond
        attempter = Attempter(
            HungUpstream(),
            RetryPolicy(attempts=1, deadline_s=deadline_s),
            Breakers(BreakerPolicy(failures=1000), time.monotonic),
        )
        with pytest.raises(AttemptFailed) as failed:
            await attempter.run((model("only"),), busy_build, buffered=True)
        failures.append(failed.value)
    return failures


@pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop])
def test_an_attempt_cut_by_the_deadline_answers_that_the_deadline_passed(loop_factory) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        failures = runner.run(cut_chains(200))
    for failed in failures:
        assert isinstance(failed.error, DeadlineExceeded)
        assert "s deadline (retry.deadline_s); tried: " in str(failed.error)
        # on a loaded host the deadline may pass before the attempt starts: none is made
        assert {(record.model, record.error_type) for record in failed.records} <= {
            ("only", "deadline")
        }
    assert sum(len(failed.records) for failed in failures) > 0
