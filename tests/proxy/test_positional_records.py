"""The per-request records the proxy builds by position carry each value in its own field."""

from __future__ import annotations

from gateway.config.model import Model, Price, Tier, Upstream
from gateway.metering.estimate import estimate_prompt_tokens, prompt_tokens_most
from gateway.metering.types import KeyLimits, LevelLimits, MeterRequest, Outcome
from gateway.proxy.attempt_outcome import AttemptRecord
from gateway.proxy.auth import Principal
from gateway.proxy.billing import outcome_of
from gateway.proxy.context import RequestContext
from gateway.proxy.incoming import Incoming
from gateway.proxy.meter_request import metered
from gateway.proxy.routing import CHAT, Plan

UPSTREAM = Upstream("up", "http://127.0.0.1:9/v1", None)
FIRST = Model("first", UPSTREAM, "first-id", "text", price=Price(1.0, 2.0))
ANSWERED = Model("second", UPSTREAM, "second-id", "text", price=Price(3.0, 4.0), deployment="d")
TIER = Tier("pro", {"text": (FIRST, ANSWERED)})
LEVELS = (LevelLimits("org", "o-1"),)
PRINCIPAL = Principal(
    "alice", TIER, "key-1", limits=KeyLimits("key-1", rpm=5), batch="b-1", levels=LEVELS
)
PLAN = Plan("text", "text_generation", (FIRST, ANSWERED))


def test_the_outcome_has_each_value_in_its_field() -> None:
    ctx = RequestContext("req-1", CHAT, started=1.0)
    ctx.principal, ctx.plan, ctx.model = PRINCIPAL, PLAN, ANSWERED
    ctx.status, ctx.usage = 201, {"prompt_tokens": 12, "completion_tokens": 34}
    ctx.completion_chars, ctx.images, ctx.audio_ms = 56, 7, 89
    ctx.records = [AttemptRecord("first", "up", "timeout", 0.1, False)] * 2
    ctx.ended, ctx.downgraded, ctx.cache = 1.5, True, "miss"
    ctx.tags, ctx.rollout = ("t",), "second"
    assert outcome_of(ctx) == Outcome(
        status=201,
        model="second",
        provider="up",
        upstream_model="second-id",
        price=Price(3.0, 4.0),
        prompt_tokens=12,
        completion_tokens=34,
        completion_chars=56,
        images=7,
        audio_ms=89,
        fallback=True,
        attempts=2,
        latency_ms=500.0,
        delivered=False,
        estimated=False,
        downgraded=True,
        deployment="d",
        cache="miss",
        tags=("t",),
        rollout="second",
        batch="b-1",
    )


def test_the_meter_request_has_each_value_in_its_field() -> None:
    ctx = RequestContext("req-1", CHAT)
    body = {"model": "text", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    incoming = Incoming({**body, "max_tokens": 100}, size=123)
    made = metered(ctx, incoming, PLAN, PRINCIPAL)
    expected = MeterRequest(
        request_id="req-1",
        user="alice",
        key_id="key-1",
        tier=TIER,
        capability="text_generation",
        byok=False,
        prompt_tokens_estimate=estimate_prompt_tokens(incoming.fields),
        max_output_tokens=100,
        audio_ms_estimate=0,
        price=Price(1.0, 2.0),
        images_estimate=0,
        generates_tokens=True,
        key_limits=KeyLimits("key-1", rpm=5),
        prompt_tokens_most=prompt_tokens_most(123),
        choices=2,
        levels=LEVELS,
    )
    assert made == expected
    assert made.prompt_tokens_estimate != made.prompt_tokens_most  # told apart
