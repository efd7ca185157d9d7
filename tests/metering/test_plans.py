"""A request's reservation planned once a second (``plans.py``): the same checks as worked out
afresh, at every instant of that second and after; the outage figures from the latest plan."""

from __future__ import annotations

from dataclasses import replace

from gateway.config.model import Config, Price
from gateway.metering import Meter, counters
from gateway.metering.last_known import LastKnown
from gateway.metering.types import Check, KeyLimits, LevelLimits, MeterRequest, Windowed
from gateway.metering.windows import windows_at
from gateway.store.factory import create_store
from gateway.store.port import Counter, Decision

from .helpers import NOON, Clock, request, run

PRICE = Price(input=0.15, output=0.6)


def afresh(config: Config, meter_request: MeterRequest, now: float) -> tuple[Check, ...]:
    limits = counters.LimitCache(config).get(meter_request)
    return counters.reservation(limits, meter_request, windows_at(now))


def admitted_checks(
    config: Config, clock: Clock, requests: list[tuple[float, MeterRequest]]
) -> list[tuple[Check, ...]]:
    """Each request admitted by one meter at its instant: the checks it reserved."""

    async def scenario() -> list[tuple[Check, ...]]:
        meter = Meter(config, create_store(None, config.settings), clock=clock)
        found = []
        for now, meter_request in requests:
            clock.now = now
            found.append((await meter.admit(meter_request)).checks)
        await meter.aclose()
        return found

    return run(scenario())


def test_requests_of_one_second_reserve_what_each_would_alone(config: Config) -> None:
    clock = Clock()
    keyed = KeyLimits("key-alice", rpm=100, tpm=10**6, max_parallel=100, usd_day=10**8)
    every = Windowed(10**9, 10**9, 10**9, 10**9)
    levels = (LevelLimits("team", "t1", "Europe/Paris", every, every, every, 100),)
    base = request(config, prompt=4, max_tokens=30, price=PRICE, generates_tokens=True)
    varied = [
        base,
        replace(base, prompt_tokens_estimate=7, max_output_tokens=0, generates_tokens=False),
        replace(base, audio_ms_estimate=1500, images_estimate=2, request_id="r3"),
        replace(base, key_limits=keyed, levels=levels, request_id="r4"),
        replace(base, key_limits=keyed, levels=levels, prompt_tokens_estimate=3),
        replace(base, byok=True, request_id="r6"),
    ]
    # the plan is made at the second's first instant, reused to its last, made again after
    instants = [NOON + 0.01, NOON + 0.5, NOON + 0.99, NOON + 1.0, NOON + 59.7, NOON + 61.2]
    timeline = [(now, r) for now in instants for r in varied]
    got = admitted_checks(config, clock, timeline)
    for (now, meter_request), checks in zip(timeline, got, strict=True):
        assert checks == afresh(config, meter_request, now), (now, meter_request.request_id)


def test_the_next_second_counts_its_time_to_live_afresh(config: Config) -> None:
    clock = Clock()
    alice = request(config, prompt=40, price=PRICE)
    first, same_second, next_second = admitted_checks(
        config, clock, [(NOON + 0.2, alice), (NOON + 0.9, alice), (NOON + 1.1, alice)]
    )
    assert first[0].counter.ttl_s == same_second[0].counter.ttl_s
    assert next_second[0].counter.ttl_s == first[0].counter.ttl_s - 1


def test_a_key_whose_limits_change_is_planned_again_within_the_second(config: Config) -> None:
    clock = Clock()
    alice = request(config, prompt=40, price=PRICE)
    limited = replace(alice, key_limits=KeyLimits("key-alice", rpm=3))
    before, after = admitted_checks(config, clock, [(NOON, alice), (NOON + 0.1, limited)])
    assert "key_rpm" not in [check.kind for check in before]
    assert "key_rpm" in [check.kind for check in after]


def check(key: str, limit: int) -> Check:
    return Check("user_day", Counter(key, "usd", 10, limit))


def test_the_outage_figures_are_the_latest_decision_of_each_counter() -> None:
    known = LastKnown()
    shared, own = check("gw:{u:a}:d:1", 100), check("gw:{u:a}:k:x", 50)
    known.record("key-1", (shared, own), Decision((0, 0), (100, 50), (10, 10)))
    known.record("key-2", (shared,), Decision((60,), (100,), (10,)))  # 30 left
    known.record("key-1", (shared, own), Decision((20, 0), (100, 50), (10, 10)))  # 70 left
    assert known.take((check("gw:{u:a}:d:1", 100),)) is None  # 70 - 10: 60 left
    denial = known.take((Check("user_day", Counter("gw:{u:a}:d:1", "usd", 61)),))
    assert denial is not None and denial.denied == 0 and denial.used == (40,)
