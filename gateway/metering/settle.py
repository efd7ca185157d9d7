"""A finished request → its usage, its record and the store writes that reconcile it (pure).

Reconcile: each reserved counter moves by ``actual - granted`` and the settle ends the
request's lease; if the lease is gone (swept after it expired, or lost with a restarted
Redis) the grants are no longer held, so they are added back. When the reserve's reply was
lost (admitted unchecked) the grants are unknown: the actual usage is added and the lease, if
the reserve did run, gives its grants back. Either way the counters end at the actual usage. A
failed request (status >= 400) gives everything back, the request count included; a BYOK
request keeps only its request count. Usage the upstream did not report is estimated
(``estimate.py``) and the record says ``estimated: true``.

Reported usage is not trusted: prompt and completion tokens are each clamped to
``[0, MAX_REPORTED_TOKENS]`` (ten million: above any model's context window), and further to
what the request could produce: completion tokens to ``n`` x the max_tokens sent upstream,
prompt tokens to the request's ``prompt_tokens_most`` (its body's bytes plus an allowance);
images to ``[0, MAX_IMAGES]`` and audio and video to ``[0, MAX_AUDIO_MS]``; a value that is not
an integer counts as 0. A record with a clamped value says ``usage_flagged: true`` (counted by
``gateway_usage_clamped_total``) and a warning is logged.

Video is recorded as ``video_ms`` (``audio_ms`` stays 0), and counts against the capability's
media-milliseconds counter, the one ``minutes_per_day`` limits (video minutes for
``video_generation``).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import itemgetter, sub
from typing import Any, NamedTuple

from gateway.metering import allowance, allowance_joint, record_codec
from gateway.metering.counters import SETTLED_INDEX, USD_INDEX
from gateway.metering.estimate import tokens_for_chars
from gateway.metering.pricing import MICROS_PER_USD, cost_micros
from gateway.metering.record import UsageRecord
from gateway.metering.types import NO_AMOUNTS, Admission, Amounts, Check, Outcome
from gateway.metering.windows import AGGREGATE_TTL_S, day_and_month
from gateway.store import keys
from gateway.store.port import LeaseEnd, SettleBatch, SettleForm

logger = logging.getLogger("gateway.metering")
MAX_REPORTED_TOKENS = 10_000_000
MAX_IMAGES = 10_000
MAX_AUDIO_MS = 100_000_000  # about 28 hours
# Per-request tuples are made with ``tuple.__new__``: a NamedTuple's own ``__new__`` is a
# Python function, some three times slower (it fills the defaults: here every field is given).
_new = tuple.__new__
ONE_REQUEST = Amounts(requests=1)  # what a BYOK request is charged
# a reservation's settle, worked out from its checks (``plans.py`` does it once per plan)
SettleLayout = tuple[tuple[str, str, int, int], ...]  # per check: key, field, ttl, index
LeaseLayout = tuple[tuple[str, tuple[tuple[int, str, str, int], ...]], ...]  # per lease group

# Fields of the per-user and per-model daily aggregate hashes.
AGGREGATE_FIELDS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "audio_ms",
    "images",
    "usd_micros",
    "video_ms",
)


@dataclass(slots=True)
class Usage:
    """What a request used, as reported or estimated; ``cost`` in micro-USD."""

    prompt_tokens: int
    completion_tokens: int
    images: int
    audio_ms: int
    cost: int
    estimated: bool
    flagged: bool = False  # a reported value was implausible and clamped
    video_ms: int = 0


class SpendKey(NamedTuple):
    """What a watched spend counter measures, for the cost alerts."""

    scope: str  # "overall" or "tier:<name>"
    period: str  # "day" or "month"
    window: str  # "20261122" or "202611"


@dataclass(slots=True)
class Settlement:
    batch: SettleBatch
    spend: tuple[SpendKey, ...]  # one per watched increment, in order
    record: UsageRecord | None  # None: only leases to end (a refused reservation's)
    # allowances (or their joint) whose folded level usage needs a batch queued (``fold``)
    unqueued: list[allowance.Allowance] | list[allowance_joint.Joint] | None = None
    sealed: Callable[[], list[SettleBatch]] | None = None  # leaving the buffer: grants ended


def failed(outcome: Outcome) -> bool:
    """Nothing reached the client: give the reservation back (a cut stream is still charged)."""
    return outcome.status >= 400 and not outcome.delivered


def plausible(value: object, most: int) -> tuple[int, bool]:
    """``value`` as an integer in ``[0, most]``, and whether it had to be changed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0, True
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0, True
        value = int(value)
    clamped = min(max(value, 0), most)
    return clamped, clamped != value


def token_bounds(admission: Admission) -> tuple[int, int]:
    """The most prompt and completion tokens the admitted request could have used."""
    request = admission.request
    prompt = min(request.prompt_tokens_most or MAX_REPORTED_TOKENS, MAX_REPORTED_TOKENS)
    sent = admission.clamp_max_tokens or request.max_output_tokens
    if not request.generates_tokens or sent <= 0:
        return prompt, MAX_REPORTED_TOKENS
    return prompt, min(sent * request.choices, MAX_REPORTED_TOKENS)


def trusted(
    outcome: Outcome, bounds: tuple[int, int] = (MAX_REPORTED_TOKENS, MAX_REPORTED_TOKENS)
) -> tuple[Outcome, bool]:
    """``outcome`` with its reported usage clamped (tokens to ``bounds``: prompt, completion),
    and whether anything was."""
    prompt, completion = outcome.prompt_tokens, outcome.completion_tokens
    most_prompt, most_completion = bounds
    if (
        (prompt is None or (type(prompt) is int and 0 <= prompt <= most_prompt))
        and (completion is None or (type(completion) is int and 0 <= completion <= most_completion))
        and type(outcome.images) is int
        and 0 <= outcome.images <= MAX_IMAGES
        and type(outcome.audio_ms) is int
        and 0 <= outcome.audio_ms <= MAX_AUDIO_MS
        and type(outcome.video_ms) is int
        and 0 <= outcome.video_ms <= MAX_AUDIO_MS
    ):
        return outcome, False  # the common case, checked in one pass
    flagged = False
    values: dict[str, Any] = {}
    for name, most in (
        ("prompt_tokens", most_prompt),
        ("completion_tokens", most_completion),
        ("images", MAX_IMAGES),
        ("audio_ms", MAX_AUDIO_MS),
        ("video_ms", MAX_AUDIO_MS),
    ):
        value = getattr(outcome, name)
        if value is not None:
            values[name], changed = plausible(value, most)
            flagged = flagged or changed
    return (replace(outcome, **values), True) if flagged else (outcome, False)


def usage(admission: Admission, outcome: Outcome) -> Usage:
    request = admission.request
    # ``token_bounds``, written out: a call costs more than its few steps (once per request)
    most_prompt = min(request.prompt_tokens_most or MAX_REPORTED_TOKENS, MAX_REPORTED_TOKENS)
    sent = admission.clamp_max_tokens or request.max_output_tokens
    if not request.generates_tokens or sent <= 0:
        bounds = most_prompt, MAX_REPORTED_TOKENS
    else:
        bounds = most_prompt, min(sent * request.choices, MAX_REPORTED_TOKENS)
    outcome, flagged = trusted(outcome, bounds)
    if flagged:
        logger.warning(
            "metering: implausible usage reported for %s clamped",
            request.request_id,
            extra={"event": "usage_flagged", "request_id": request.request_id},
        )
    prompt, completion = outcome.prompt_tokens, outcome.completion_tokens
    if outcome.status >= 400 and not outcome.delivered:  # ``failed``
        prompt, completion = prompt or 0, completion or 0
        audio, video, estimated = 0, 0, False  # no audio or video was produced
    else:  # the estimates worked out only for what the upstream did not report
        estimated = outcome.estimated
        if prompt is None:
            prompt = request.prompt_tokens_estimate
            estimated = estimated or prompt > 0
        if completion is None:
            completion = tokens_for_chars(outcome.completion_chars)
            estimated = estimated or outcome.completion_chars > 0
        video = outcome.video_ms
        audio = 0 if video else outcome.audio_ms or request.audio_ms_estimate
        if not outcome.audio_ms and not video and request.audio_ms_estimate > 0:
            estimated = True
    price = outcome.price if outcome.price is not None else request.price
    cost = cost_micros(price, prompt, completion, outcome.images, audio + video)
    if outcome.batch is not None:
        cost = cost * request.tier.batch_price_percent // 100
    return Usage(prompt, completion, outcome.images, audio, cost, estimated, flagged, video)


def charged(admission: Admission, outcome: Outcome, used: Usage) -> Amounts:
    """What counts against the quotas and budgets."""
    if outcome.status >= 400 and not outcome.delivered:  # ``failed``
        return NO_AMOUNTS
    if admission.request.byok:
        return ONE_REQUEST
    media_ms = used.audio_ms + used.video_ms
    return _new(Amounts, (1, used.prompt_tokens + used.completion_tokens, media_ms, used.cost))


def settlement(admission: Admission, outcome: Outcome, record_id: str) -> Settlement:
    request = admission.request
    used = usage(admission, outcome)
    if outcome.status >= 400 and not outcome.delivered:  # ``charged``, written out
        actual = NO_AMOUNTS
    elif request.byok:
        actual = ONE_REQUEST
    else:
        tokens = used.prompt_tokens + used.completion_tokens
        actual = _new(Amounts, (1, tokens, used.audio_ms + used.video_ms, used.cost))
    record = usage_record(admission, outcome, used, record_id)
    day_number = int(admission.started // 86_400)  # ``day_and_month``'s day
    day = _day_keys(request.user, outcome.model or "-", request.tier.name, day_number)
    charged = actual.usd_micros > 0
    layout = admission.settle_layout or settle_layout(admission.checks)
    found = _FORMS_SEEN.get((id(layout), id(day), charged))
    form, pick = found[:2] if found is not None else _form(layout, day, charged)
    granted = admission.granted or (0,) * len(admission.checks)
    if len(granted) != len(layout):
        raise ValueError(f"{len(granted)} grants for {len(layout)} counters")
    values = (*actual, 0)  # index -1: what a count of requests in flight settles to
    reconciled = map(sub, pick(values), granted)  # in C: a comprehension is a call (3.11)
    spend = day[4] if charged else ()
    # the levels' usage, when from allowances, summed in them until a batch carries it
    unqueued = allowance_joint.fold(admission.uses, actual) if admission.uses else None
    error = 1 if outcome.status >= 400 and not outcome.delivered else 0  # ``failed``
    aggregated: tuple[int, ...] = (1, error, used.prompt_tokens, used.completion_tokens)
    aggregated += (used.audio_ms, used.images, used.cost, used.video_ms)  # ``AGGREGATE_FIELDS``
    watched = (actual.usd_micros,) * 4 if charged else ()
    deltas = (*reconciled, *watched, *aggregated, *aggregated)  # ``_form``'s slots
    record_bytes = record_codec.encode(record)
    batch = SettleBatch((), record_bytes, (), _leases(admission), day[2], (), form, deltas)
    return Settlement(batch, spend, record, unqueued)


def usage_record(
    admission: Admission, outcome: Outcome, used: Usage, record_id: str
) -> UsageRecord:
    """The request's record (``record_codec`` stores it compactly).

    Built with positional arguments, in ``UsageRecord``'s field order: once per request, and
    a dataclass's ``__init__`` binds 32 keywords some five times slower
    (``tests/metering/test_settle.py`` checks each field by name)."""
    request = admission.request
    cost = used.cost / MICROS_PER_USD  # ``micros_to_usd``: the list price (as if not BYOK)
    charged = 0.0 if request.byok or (outcome.status >= 400 and not outcome.delivered) else cost
    org: str | None = None  # the ids of the request's levels, found in one pass (no team:
    team: str | None = None  # None)
    for level in request.levels:
        if level.level == "org":
            org = level.id
        elif level.level == "team":
            team = level.id
    return UsageRecord(
        round(admission.started, 3),  # ts
        record_id,
        request.request_id,
        request.user,
        request.key_id,
        request.tier.name,  # tier
        request.capability,
        outcome.model,
        outcome.provider,
        outcome.upstream_model,
        used.prompt_tokens,
        used.completion_tokens,
        used.images,
        used.audio_ms,
        used.video_ms,
        cost,  # cost_usd
        outcome.fallback,
        request.byok,
        charged,  # charged_usd: nothing for BYOK or ``failed``
        outcome.status,
        round(outcome.latency_ms, 1),  # latency_ms
        outcome.attempts,
        used.estimated,
        used.flagged,  # usage_flagged
        outcome.downgraded,
        outcome.deployment,
        outcome.cache,
        tuple(outcome.tags),
        outcome.rollout,
        outcome.batch,  # batch_id
        org,
        team,
    )


def settle_layout(checks: tuple[Check, ...]) -> SettleLayout:
    """Per check: its counter's key, field and time to live, and the index in ``Amounts``
    (with a last 0 at -1) its settle moves it to."""
    return tuple(
        [
            (counter.key, counter.field, counter.ttl_s, SETTLED_INDEX.get(kind, USD_INDEX))
            for kind, counter in checks
        ]
    )


def lease_layout(checks: tuple[Check, ...]) -> LeaseLayout:
    """Each hash-tag group a reservation of ``checks`` may write (its lease sorted set), with
    its checks' positions, keys, fields and times to live, in the order they come."""
    groups: dict[str, list[tuple[int, str, str, int]]] = {}
    for position, (_, counter) in enumerate(checks):
        member = (position, counter.key, counter.field, counter.ttl_s)
        groups.setdefault(keys.lease(counter.key), []).append(member)
    return tuple((group, tuple(members)) for group, members in groups.items())


# Forms by their layout's and day keys' identity (a plan's layout lives a second), and by value
# (the same form for every second of a window: a store keys its own caches by the form).
_FORMS_SEEN: dict[tuple[int, int, bool], tuple[SettleForm, itemgetter[Any], object, object]] = {}
_FORMS: dict[tuple[SettleLayout, DayKeys, bool], tuple[SettleForm, itemgetter[Any]]] = {}
MOST_FORMS = 4096


def _form(layout: SettleLayout, day: DayKeys, charged: bool) -> tuple[SettleForm, itemgetter[Any]]:
    """The form of a settle with ``layout`` on ``day`` (its watched spend when ``charged``), and
    what picks from ``(*Amounts, 0)`` each layout entry's value (two more: a tuple always).
    Slots: the layout's counters, the watched spend counters, the user's and model's aggregates."""
    found = _FORMS.get((layout, day, charged))
    if found is None:
        user_aggregate, model_aggregate, _, watched, _ = day
        slots = [(key, field, ttl_s, False) for key, field, ttl_s, _ in layout]
        if charged:
            slots += [(key, scope, AGGREGATE_TTL_S, True) for key, scope in watched]
        plain = len(slots)
        for aggregate in (user_aggregate, model_aggregate):
            slots += [(aggregate, name, AGGREGATE_TTL_S, False) for name in AGGREGATE_FIELDS]
        found = SettleForm(tuple(slots), plain), itemgetter(*[e[3] for e in layout], -1, -1)
        if len(_FORMS) >= MOST_FORMS:
            _FORMS.clear()
        _FORMS[layout, day, charged] = found
    if len(_FORMS_SEEN) >= MOST_FORMS:
        _FORMS_SEEN.clear()
    _FORMS_SEEN[id(layout), id(day), charged] = (*found, layout, day)  # both kept: ids unique
    return found


def _leases(admission: Admission) -> tuple[LeaseEnd, ...]:
    """One ``LeaseEnd`` per hash-tag group the reservation may have written."""
    lease = admission.lease
    if not lease:
        return ()
    granted = admission.granted
    layout = admission.lease_layout or lease_layout(admission.checks)
    if not granted:
        return tuple([_new(LeaseEnd, (group, lease, None)) for group, _ in layout])
    ends = []
    for group, members in layout:
        held = []
        for at, key, field, ttl in members:
            amount = granted[at]
            if amount:
                held.append((key, field, amount, ttl))
        ends.append(_new(LeaseEnd, (group, lease, tuple(held))))
    return tuple(ends)


DayKeys = tuple[str, str, str, tuple[tuple[str, str], ...], tuple[SpendKey, ...]]


@functools.lru_cache(maxsize=1024)
def _day_keys(user: str, model: str, tier: str, day_number: int) -> DayKeys:
    """The user's and the model's daily aggregate hashes, the user's day index of records,
    and the tier's watched spend counters and what they measure (``_spend_keys``) on the UTC
    day ``day_number``: the same all day, so made once per user, model and day."""
    day, month = day_and_month(day_number * 86_400)
    return (
        keys.user_aggregate(user, day),
        keys.model_aggregate(model, day),
        keys.user_records(user, day),
        *_spend_keys(tier, day, month),
    )


def _spend_keys(
    tier: str, day: str, month: str
) -> tuple[tuple[tuple[str, str], ...], tuple[SpendKey, ...]]:
    """The watched spend counters (key, field) a charged request adds its cost to, overall
    and per tier, day and month, and what each measures (for the cost alerts)."""
    scopes = ("overall", f"tier:{tier}")
    watched, spend = [], []
    for period, window, key_period in (("day", day, "d"), ("month", month, "m")):
        for scope in scopes:
            watched.append((keys.spend(key_period, window), scope))
            spend.append(SpendKey(scope, period, window))
    return tuple(watched), tuple(spend)
