"""A request → the counters its reservation checks, and the kinds they limit (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from gateway.config.model import Config, Quota
from gateway.metering import key_limits, level_limits, tier_shards
from gateway.metering.limits import (
    BudgetLimits,
    Limits,
    budget_limits,
    quota_limits,
    user_budget,
    user_quota,
)
from gateway.metering.pricing import cost_micros
from gateway.metering.types import Amounts, Check, MeterRequest
from gateway.metering.windows import Windows
from gateway.store import keys
from gateway.store.port import UNLIMITED, Counter

# Check kinds and what they limit; the budget kinds hold micro-USD.
REQUESTS, TOKENS, AUDIO = "requests", "tokens", "audio"
USER_DAY, USER_MONTH, TIER_DAY, TIER_MONTH = "user_day", "user_month", "tier_day", "tier_month"
BUDGET_KINDS = (USER_DAY, USER_MONTH, TIER_DAY, TIER_MONTH)
TIER_KINDS = (TIER_DAY, TIER_MONTH)
TOKENS_INDEX = 1  # where ``reservation`` puts the tokens check
# The kinds whose grants make up ``Amounts`` (requests, tokens, audio_ms, usd_micros): the
# first checks of every ``template``, in this order.
AMOUNT_KINDS = (REQUESTS, TOKENS, AUDIO, USER_DAY)
NO_ESTIMATE = Amounts(requests=1)  # what a ``template`` is built with
_new = tuple.__new__


@dataclass(frozen=True)
class ConfigLimits:
    """One user's limits for one capability from the config (store overrides apply later,
    inside the store)."""

    quota: Limits
    user_budget: BudgetLimits
    tier_budget: BudgetLimits
    tier_shards: int = 1  # settings.tier_budget_shards


class LimitCache:
    """``ConfigLimits`` per (user, tier, capability), worked out once: they only change
    with the config, which is immutable. Bounded, as users come from keys."""

    def __init__(
        self,
        config: Config,
        size: int = 10_000,
        tier_quotas: Mapping[tuple[str, str], Quota] | None = None,
    ) -> None:
        self._config = config
        self._tier_quotas = tier_quotas or {}  # (tier, capability) → run-time quota
        self._size = size
        self._entries: dict[tuple[str, str, str], ConfigLimits] = {}

    def get(self, request: MeterRequest) -> ConfigLimits:
        key = (request.user, request.tier.name, request.capability)
        limits = self._entries.get(key)
        if limits is None:
            if len(self._entries) >= self._size:
                self._entries.clear()
            limits = self._entries[key] = _config_limits(self._config, request, self._tier_quotas)
        return limits


def _config_limits(
    config: Config, request: MeterRequest, tier_quotas: Mapping[tuple[str, str], Quota]
) -> ConfigLimits:
    user, tier = request.user, request.tier
    run_time = tier_quotas.get((tier.name, request.capability))
    if run_time is not None:  # replaces the tier's tiers.yaml quota (control/tier_quotas.py)
        tier = replace(tier, quotas={**tier.quotas, request.capability: run_time})
    return ConfigLimits(
        quota_limits(user_quota(config, user, tier, request.capability)),
        budget_limits(user_budget(config, user, tier)),
        budget_limits(tier.tier_budget),
        max(1, config.settings.tier_budget_shards),
    )


def output_tokens(limits: ConfigLimits, request: MeterRequest) -> int:
    """Output tokens to reserve: the client's max_tokens, else (on a token-generating
    request) the tightest cap; capped by the tier's ``max_tokens`` and the configured
    ``tokens_per_request`` (a store override of the latter applies inside the store)."""
    return capped_output(output_cap(limits, request), request)


def output_cap(limits: ConfigLimits, request: MeterRequest) -> int:
    """The tightest of the tier's ``max_tokens`` and ``tokens_per_request`` (0: neither)."""
    caps = [c for c in (request.tier.max_tokens, limits.quota.tokens_per_request) if c and c > 0]
    return min(caps) if caps else 0


def capped_output(cap: int, request: MeterRequest) -> int:
    """``output_tokens`` given its ``output_cap``."""
    wanted = request.max_output_tokens
    if wanted > 0:
        return min(wanted, cap) if cap else wanted
    return cap if request.generates_tokens else 0


def estimate(request: MeterRequest, flex: int) -> Amounts:
    """What the request may use at most, given its ``output_tokens``: the reservation before
    any clamp to what remains. BYOK requests reserve one request and nothing else.
    """
    if request.byok:
        return NO_ESTIMATE
    prompt, audio_ms = request.prompt_tokens_estimate, request.audio_ms_estimate
    cost = cost_micros(request.price, prompt, flex, request.images_estimate, audio_ms)
    return _new(Amounts, (1, prompt + flex, audio_ms, cost))  # runs once per request


def reservation(
    config_limits: ConfigLimits, request: MeterRequest, windows: Windows, tier_shard: int = -1
) -> tuple[Check, ...]:
    """The checks, in the order their failures are reported; the tier budget's on
    ``tier_shard`` (-1: the user's home shard, ``tier_shards``)."""
    flex = 0 if request.byok else output_tokens(config_limits, request)
    shape = template(config_limits, request, windows, tier_shard)
    return fill(shape, fills(shape), estimate(request, flex), flex)


def template(
    config_limits: ConfigLimits, request: MeterRequest, windows: Windows, tier_shard: int = -1
) -> tuple[Check, ...]:
    """``reservation``'s checks before any amount is known (counts of requests at 1, every
    other amount 0): what ``fill`` completes. The same for every request of one user, key,
    tier and capability in one second (time-to-live counts whole seconds)."""
    user, capability = request.user, request.capability
    limits = config_limits.quota
    day_key = keys.user_day(user, windows.day)
    day = windows.day_ttl()

    def counter(unit: str, fixed: int, limit: int) -> Counter:
        name = keys.capability_field(capability, unit)
        return Counter(day_key, name, fixed, limit, name, ttl_s=day)

    tokens = counter(keys.TOKENS, 0, limits.tokens)._replace(
        cap=limits.tokens_per_request,
        cap_field=keys.capability_field(capability, keys.TOKENS_PER_REQUEST),
    )
    checks = (
        Check(REQUESTS, counter(keys.REQUESTS, 1, limits.requests)),
        Check(TOKENS, tokens),
        Check(AUDIO, counter(keys.AUDIO_MS, 0, limits.audio_ms)),
    )
    budget = _budget_checks(config_limits, request, windows, 0, tier_shard)
    keyed = (
        key_limits.key_checks(request.key_limits, user, windows, NO_ESTIMATE)
        if request.key_limits
        else ()
    )
    if request.levels:  # the key's organization and team (level_limits.py)
        keyed = (*keyed, *level_limits.minute_checks(request.levels, windows.now))
    return (*checks, *budget, *keyed)


# a template's check that takes an amount of the estimate: (position, index in ``Amounts``,
# its kind, key, field, template amount, the rest of its counter); unpacked ahead so that
# ``fill`` reads no attribute of a counter (a team key's template has 16 such checks)
Fill = tuple[int, int, str, str, str, int, tuple[object, ...]]
Fills = tuple[Fill, ...]


def fills(shape: tuple[Check, ...]) -> Fills:
    """Which checks of a ``template`` take which amount of the estimate: what each counts at
    settle, as every kind reserves what it settles. Left out: those whose amount is the
    template's own (counts of requests: every estimate has one) and the tokens check, whose
    estimate is split in fixed and flex (``fill`` does it apart)."""
    found = []
    for position, (kind, counter) in enumerate(shape):
        index = SETTLED_INDEX.get(kind, USD_INDEX)
        if index > 0 and position != TOKENS_INDEX:
            key, field, fixed, *rest = counter
            found.append((position, index, kind, key, field, fixed, tuple(rest)))
    return tuple(found)


def fill(shape: tuple[Check, ...], filled: Fills, amounts: Amounts, flex: int) -> tuple[Check, ...]:
    """A ``template``'s checks with the request's estimate (``amounts``, ``flex`` of its
    tokens flexible); a check whose amount is the template's own is kept as it is.

    Tuples are made with ``tuple.__new__``: a NamedTuple's own ``__new__`` is a Python
    function, some three times slower, and this runs for every counter of every request."""
    checks = list(shape)
    kind, (key, field, _, limit, limit_field, _, cap, cap_field, ttl_s, sliding) = shape[
        TOKENS_INDEX
    ]
    fixed = amounts.tokens - flex
    tokens = (key, field, fixed, limit, limit_field, flex, cap, cap_field, ttl_s, sliding)
    checks[TOKENS_INDEX] = _new(Check, (kind, _new(Counter, tokens)))
    for position, index, kind, key, field, own, rest in filled:
        amount = amounts[index]
        if amount != own:
            # joined with ``+``: some 400 instructions fewer than ``(key, field, amount, *rest)``
            counter = _new(Counter, (key, field, amount) + rest)  # noqa: RUF005
            checks[position] = _new(Check, (kind, counter))
    return tuple(checks)


def _budget_checks(
    limits: ConfigLimits, request: MeterRequest, windows: Windows, cost: int, shard: int
) -> list[Check]:
    user, tier = limits.user_budget, limits.tier_budget
    day, month = windows.day_ttl(), windows.month_ttl()
    user_day = keys.user_day(request.user, windows.day)
    user_month = keys.user_month(request.user, windows.month)
    checks = [
        Check(USER_DAY, Counter(user_day, keys.USD, cost, user.day, keys.USD_DAY, ttl_s=day)),
        Check(
            USER_MONTH,
            Counter(user_month, keys.USD, cost, user.month, keys.USD_MONTH, ttl_s=month),
        ),
    ]
    # Tier counters sit in another cluster slot: kept only when the tier has a budget (and
    # skipped for BYOK, which is never charged).
    if request.byok:
        return checks
    name, shards = request.tier.name, limits.tier_shards
    shard = tier_shards.home_shard(request.user, shards) if shard < 0 else shard
    if tier.day != UNLIMITED:
        key = tier_shards.day_key(name, windows.day, shard, shards)
        limit = tier_shards.slice_limit(tier.day, shard, shards)
        checks.append(Check(TIER_DAY, Counter(key, keys.USD, cost, limit, ttl_s=day)))
    if tier.month != UNLIMITED:
        key = tier_shards.month_key(name, windows.month, shard, shards)
        limit = tier_shards.slice_limit(tier.month, shard, shards)
        checks.append(Check(TIER_MONTH, Counter(key, keys.USD, cost, limit, ttl_s=month)))
    return checks


# check kind → the index in ``Amounts`` its settle counts (-1: nothing, e.g. in flight);
# a kind not named here counts micro-USD. A lookup, not a chain of tests: the settle asks once
# per counter of every request (a team key's has some forty).
USD_INDEX = 3  # what a kind not in ``SETTLED_INDEX`` counts: micro-USD
SETTLED_INDEX: dict[str, int] = {
    REQUESTS: 0,
    TOKENS: 1,
    AUDIO: 2,
    **{kind: key_limits.SETTLED_INDEX[kind] for kind in key_limits.KINDS},
    **level_limits.SETTLED_INDEX,
}


def amount_index(kind: str) -> int:
    """The index in ``Amounts`` a check of ``kind`` counts at settle (-1: nothing)."""
    return SETTLED_INDEX.get(kind, USD_INDEX)


def amount_for(kind: str, amounts: Amounts) -> int:
    """The part of ``amounts`` a check of ``kind`` counts."""
    index = SETTLED_INDEX.get(kind, USD_INDEX)
    return amounts[index] if index >= 0 else 0
