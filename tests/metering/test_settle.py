"""The settlement arithmetic on its own (``metering/settle.py``): cost, clamps, refunds."""

from __future__ import annotations

from dataclasses import replace

from gateway.config.model import Config, Price
from gateway.metering import counters
from gateway.metering.record import UsageRecord
from gateway.metering.settle import (
    MAX_REPORTED_TOKENS,
    SpendKey,
    charged,
    plausible,
    settlement,
    token_bounds,
    usage,
)
from gateway.metering.types import Admission, Amounts, LevelLimits, MeterRequest
from gateway.metering.windows import windows_at
from gateway.store import keys
from gateway.store.port import LeaseEnd

from .helpers import NOON, ok, request

PRICE = Price(input=0.15, output=0.6)  # USD per 1M tokens: micro-USD per token


def admitted(
    config: Config,
    meter_request: MeterRequest,
    *,
    granted: tuple[int, ...] | None = None,
    lease: str = "",
    clamp: int | None = None,
) -> Admission:
    """An admission as the meter builds it: the request's own checks at NOON, and
    ``granted`` as the store answered (None: every check's full estimate; (): the reply was
    lost, admitted unchecked)."""
    limits = counters.LimitCache(config).get(meter_request)
    checks = counters.reservation(limits, meter_request, windows_at(NOON))
    if granted is None:
        granted = tuple(check.counter.fixed + check.counter.flex for check in checks)
    return Admission(
        headers={},
        clamp_max_tokens=clamp,
        request=meter_request,
        started=NOON,
        checks=checks,
        granted=granted,
        lease=lease,
    )


def deltas(admission: Admission, outcome_status: int = 200, **usage_: object) -> dict[str, int]:
    """The settle's counter deltas on the reserved counters, by check kind."""
    outcome = ok(status=outcome_status, price=PRICE, **usage_)  # type: ignore[arg-type]
    increments = settlement(admission, outcome, "rec-1").batch.increments
    by_field = {(inc.key, inc.field): inc.delta for inc in increments}
    return {
        check.kind: by_field.get((check.counter.key, check.counter.field), 0)
        for check in admission.checks
    }


# -- cost ---------------------------------------------------------------------------------------


def test_tokens_cost_their_price_in_micro_usd(config: Config) -> None:
    admission = admitted(config, request(config, prompt=1000, price=PRICE))
    used = usage(admission, ok(1000, 500, price=PRICE))
    assert used.cost == 1000 * 0.15 + 500 * 0.6 == 450


def test_a_fraction_of_a_micro_usd_is_charged_as_a_whole_one(config: Config) -> None:
    admission = admitted(config, request(config, prompt=3, price=Price(input=0.1)))
    assert usage(admission, ok(3, 0, price=Price(input=0.1))).cost == 1  # 0.3 rounded up


def test_the_answering_models_price_counts_not_the_requested_ones(config: Config) -> None:
    admission = admitted(config, request(config, prompt=100, price=Price(input=100.0)))
    assert usage(admission, ok(100, 0, price=Price(input=1.0))).cost == 100


def test_audio_and_video_are_priced_per_minute_and_per_second(config: Config) -> None:
    speech = admitted(config, request(config, prompt=0, capability="tts"))
    audio = usage(speech, ok(0, 0, price=Price(per_minute=0.006), audio_ms=30_000))
    assert (audio.audio_ms, audio.cost) == (30_000, 3000)  # half a minute of $0.006
    clip = admitted(config, request(config, prompt=0, capability="video_generation"))
    video = usage(clip, ok(0, 0, price=Price(per_second=0.1), video_ms=2500))
    assert (video.audio_ms, video.video_ms, video.cost) == (0, 2500, 250_000)
    assert charged(clip, ok(0, 0, video_ms=2500), video).audio_ms == 2500  # media ms


def test_a_batch_request_costs_the_tiers_batch_share(config: Config) -> None:
    tier = replace(config.tiers["free"], batch_price_percent=50)
    meter_request = replace(request(config, prompt=1001, price=PRICE), tier=tier)
    used = usage(admitted(config, meter_request), ok(1001, 0, price=PRICE, batch="batch_1"))
    assert used.cost == 75  # ceil(150.15) = 151, half of it rounded down


def test_usage_the_upstream_did_not_report_is_estimated(config: Config) -> None:
    admission = admitted(config, request(config, prompt=40, price=PRICE))
    used = usage(admission, ok(None, None, price=PRICE, completion_chars=400))
    assert used.prompt_tokens == 40 and used.completion_tokens > 0 and used.estimated
    reported = usage(admission, ok(40, 7, price=PRICE))
    assert (reported.completion_tokens, reported.estimated) == (7, False)


# -- clamps ---------------------------------------------------------------------------------------


def test_a_reported_value_is_clamped_to_a_whole_number_in_range() -> None:
    assert plausible(3, 10) == (3, False)
    assert plausible(-5, 10) == (0, True)
    assert plausible(12, 10) == (10, True)
    assert plausible(7.9, 10) == (7, False)  # a float is cut to a whole number, not flagged
    assert plausible(float("nan"), 10) == (0, True)
    assert plausible(float("inf"), 10) == (0, True)
    assert plausible(True, 10) == (0, True)
    assert plausible("12", 10) == (0, True)


def test_completion_tokens_are_bounded_by_the_max_tokens_sent_times_n(config: Config) -> None:
    meter_request = replace(
        request(config, max_tokens=100, generates_tokens=True, price=PRICE), choices=2
    )
    admission = admitted(config, meter_request)
    assert token_bounds(admission) == (MAX_REPORTED_TOKENS, 200)
    used = usage(admission, ok(10, 1000, price=PRICE))
    assert (used.completion_tokens, used.flagged) == (200, True)
    assert used.cost == 122  # 1.5 + 120, rounded up: what could have been produced
    clamped = admitted(config, meter_request, clamp=30)  # the meter sent max_tokens=30
    assert token_bounds(clamped) == (MAX_REPORTED_TOKENS, 60)


def test_prompt_tokens_are_bounded_by_the_requests_size(config: Config) -> None:
    meter_request = replace(request(config, price=PRICE), prompt_tokens_most=500)
    used = usage(admitted(config, meter_request), ok(10**9, 0, price=PRICE))
    assert (used.prompt_tokens, used.flagged, used.cost) == (500, True, 75)


# -- refunds and reconciling ----------------------------------------------------------------------


def test_the_counters_move_by_the_actual_usage_minus_the_grant(config: Config) -> None:
    admission = admitted(config, request(config, prompt=10, max_tokens=100, price=PRICE))
    reserved = dict(zip((c.kind for c in admission.checks), admission.granted, strict=True))
    assert reserved[counters.TOKENS] == 110
    moved = deltas(admission, prompt=10, completion=25)
    assert moved[counters.REQUESTS] == 0  # reserved 1, used 1
    assert moved[counters.TOKENS] == 35 - 110
    cost = 17  # 1.5 + 15, rounded up
    for kind in counters.BUDGET_KINDS:
        if kind in moved:
            assert moved[kind] == cost - reserved[kind]


def test_a_failed_request_gives_everything_back(config: Config) -> None:
    admission = admitted(config, request(config, prompt=10, max_tokens=100, price=PRICE))
    outcome = ok(10, 25, status=502, price=PRICE)
    assert charged(admission, outcome, usage(admission, outcome)) == Amounts()
    moved = deltas(admission, 502, prompt=10, completion=25)
    assert moved == {
        kind: -granted
        for kind, granted in zip((c.kind for c in admission.checks), admission.granted, strict=True)
    }


def test_a_cut_stream_is_charged_though_it_failed(config: Config) -> None:
    admission = admitted(config, request(config, prompt=10, price=PRICE))
    outcome = ok(10, 5, status=502, price=PRICE, delivered=True)
    assert charged(admission, outcome, usage(admission, outcome)) == Amounts(1, 15, 0, 5)


def test_byok_keeps_only_its_request_count_and_charges_nothing(config: Config) -> None:
    admission = admitted(config, request(config, prompt=1000, byok=True, price=PRICE))
    outcome = ok(1000, 500, price=PRICE)
    assert charged(admission, outcome, usage(admission, outcome)) == Amounts(requests=1)
    item = settlement(admission, outcome, "rec-1")
    assert item.record is not None
    assert item.record.list_cost_usd == 0.00045 and item.record.charged_usd == 0.0
    assert item.spend == ()  # nothing charged: no spend for the alerts


def test_unchecked_admissions_add_the_actual_usage(config: Config) -> None:
    admission = admitted(config, request(config, prompt=10, price=PRICE), granted=(), lease="l.1")
    moved = deltas(admission, prompt=10, completion=5)
    assert moved[counters.REQUESTS] == 1 and moved[counters.TOKENS] == 15


def test_the_lease_ends_with_what_it_holds_when_the_grants_are_known(config: Config) -> None:
    meter_request = request(config, prompt=10, price=PRICE)
    known = admitted(config, meter_request, lease="l.7")
    held: dict[str, set[tuple[str, str, int]]] = {}
    for check, granted in zip(known.checks, known.granted, strict=True):
        group = held.setdefault(keys.lease(check.counter.key), set())
        if granted:
            group.add((check.counter.key, check.counter.field, granted))
    ends = settlement(known, ok(price=PRICE), "rec-1").batch.leases
    assert {end.group: end.id for end in ends} == dict.fromkeys(held, "l.7")
    for end in ends:
        assert end.held is not None
        assert {(key, field, amount) for key, field, amount, _ in end.held} == held[end.group]
    lost = admitted(config, meter_request, granted=(), lease="l.8")
    assert settlement(lost, ok(price=PRICE), "rec-1").batch.leases == tuple(
        LeaseEnd(group, "l.8") for group in held
    )
    rejected = admitted(config, meter_request, granted=())
    assert settlement(rejected, ok(price=PRICE), "rec-1").batch.leases == ()


def test_charged_spend_is_watched_overall_and_per_tier_by_day_and_month(config: Config) -> None:
    admission = admitted(config, request(config, prompt=1000, price=PRICE))
    item = settlement(admission, ok(1000, 0, price=PRICE), "rec-1")
    windows = windows_at(NOON)
    assert item.spend == (
        SpendKey("overall", "day", windows.day),
        SpendKey("tier:free", "day", windows.day),
        SpendKey("overall", "month", windows.month),
        SpendKey("tier:free", "month", windows.month),
    )
    watched = [inc for inc in item.batch.increments if inc.watch]
    assert [(inc.field, inc.delta) for inc in watched] == [
        ("overall", 150),
        ("tier:free", 150),
        ("overall", 150),
        ("tier:free", 150),
    ]


def test_the_record_names_each_value_by_its_field(config: Config) -> None:
    """``usage_record`` builds the record positionally: every field holds its own value."""
    priced = Price(input=1.0, output=2.0, per_image=0.5)
    meter_request = replace(
        request(config, price=priced, request_id="q-1"),
        levels=(LevelLimits("org", "org-1"), LevelLimits("team", "team-1")),
    )
    outcome = replace(
        ok(12, 34, price=priced, latency_ms=123.45, images=2, attempts=3, fallback=True),
        deployment="dep-1", cache="miss", tags=("t1",), rollout="ro-1", batch="batch-1",
        downgraded=True, audio_ms=5, status=201,
    )  # fmt: skip
    admission = Admission(
        headers={}, clamp_max_tokens=None, request=meter_request, started=NOON + 0.1234
    )
    record = settlement(admission, outcome, "rec-1").record
    assert record is not None
    named = {name: getattr(record, name) for name in UsageRecord.__slots__}
    assert named == {
        "ts": NOON + 0.123, "record_id": "rec-1", "request_id": "q-1", "user": "alice",
        "key_id": "key-alice", "tier": "free", "capability": "text_generation",
        "model": "llama-3.1-8b", "provider": "together",
        "upstream_model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "prompt_tokens": 12,
        "completion_tokens": 34, "images": 2, "audio_ms": 5, "video_ms": 0,
        "cost_usd": record.cost_usd, "fallback": True, "byok": False,
        "charged_usd": record.cost_usd, "status": 201, "latency_ms": 123.5, "attempts": 3,
        "estimated": False, "usage_flagged": False, "downgraded": True, "deployment": "dep-1",
        "cache": "miss", "tags": ("t1",), "rollout": "ro-1", "batch_id": "batch-1",
        "org": "org-1", "team": "team-1",
    }  # fmt: skip
    assert record.cost_usd > 0
