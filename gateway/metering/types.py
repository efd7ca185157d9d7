"""The values the request pipeline hands to the meter, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from gateway.config.model import Price, Tier
from gateway.store.port import Counter

if TYPE_CHECKING:
    from gateway.metering.allowance_joint import Taken


class Amounts(NamedTuple):
    """Usage in integer units."""

    requests: int = 0
    tokens: int = 0
    audio_ms: int = 0
    usd_micros: int = 0


NO_AMOUNTS = Amounts()


@dataclass(frozen=True)
class KeyLimits:
    """A run-time client key's own limits (``-1``: none), checked in the same reservation."""

    key_id: str
    rpm: int = -1  # requests per minute
    tpm: int = -1  # tokens per minute
    max_parallel: int = -1  # requests in flight
    usd_day: int = -1  # micro-USD per UTC day
    usd_month: int = -1  # micro-USD per UTC month

    @property
    def unlimited(self) -> bool:
        return max(self.rpm, self.tpm, self.max_parallel, self.usd_day, self.usd_month) < 0


class Windowed(NamedTuple):
    """One measure's limit per window (``-1``: none); the windows are those of ``Windows``
    in the level's time zone (``zoned_windows.py``)."""

    minute: int = -1
    hour: int = -1
    day: int = -1
    month: int = -1


NO_LIMITS = Windowed()


@dataclass(frozen=True)
class LevelLimits:
    """An organization's or a team's limits, checked in the request's one reservation
    (``level_limits.py``); a level without limits is still named in the usage record."""

    level: str  # "org" | "team"
    id: str
    timezone: str = "UTC"  # the IANA zone its windows follow
    usd: Windowed = NO_LIMITS  # micro-USD
    requests: Windowed = NO_LIMITS
    tokens: Windowed = NO_LIMITS
    max_parallel: int = -1  # requests in flight


@dataclass(slots=True)
class MeterRequest:
    """What the pipeline knows before forwarding (one per request: slots, not frozen, as a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; nothing
    changes one, ``dataclasses.replace`` makes a changed copy)."""

    request_id: str
    user: str
    key_id: str
    tier: Tier
    capability: str  # e.g. "text_generation"
    byok: bool
    prompt_tokens_estimate: int
    max_output_tokens: int  # the client's max_tokens (0: none given, or no tokens generated)
    audio_ms_estimate: int  # tts: from the input characters; stt: from the upload
    price: Price  # of the first target, for the cost estimate
    images_estimate: int = 0  # images requested (``n``), for the cost estimate
    # True for chat/completions: without max_tokens, the tier's cap is reserved (and set)
    generates_tokens: bool = False
    key_limits: KeyLimits | None = None  # a run-time client key's own limits
    # Bounds on believable reported usage (0: none): the prompt cannot hold more tokens than
    # its body has bytes (plus an allowance), nor the answer more than n x the max_tokens sent.
    prompt_tokens_most: int = 0
    choices: int = 1  # answers asked for (n); each may use the max_tokens sent upstream
    levels: tuple[LevelLimits, ...] = ()  # the key's organization and team, outermost first


@dataclass(slots=True)
class Outcome:
    """What happened, once the answer finished (or failed); slots, as ``MeterRequest``."""

    status: int
    model: str | None = None  # route model name
    provider: str | None = None  # upstream name
    upstream_model: str | None = None
    price: Price | None = None  # of the model that answered
    prompt_tokens: int | None = None  # None: the upstream did not report usage
    completion_tokens: int | None = None
    completion_chars: int = 0  # for the estimator when the tokens are None
    images: int = 0
    audio_ms: int = 0  # 0: use the request's estimate
    video_ms: int = 0  # a finished video job's length (counted as media ms, priced per second)
    fallback: bool = False
    attempts: int = 1
    latency_ms: float = 0.0
    delivered: bool = False  # the client got (part of) an answer: charge it even on an error
    estimated: bool = False  # the token counts were estimated by the gateway
    downgraded: bool = False  # a cheaper model or fewer tokens, for lack of quota or budget
    deployment: str | None = None  # which deployment of the model answered
    cache: str | None = None  # "hit" | "miss" | "bypass": the response cache applied
    tags: tuple[str, ...] = ()  # the request's spend tags
    rollout: str | None = None  # the weighted chain entry the user was given
    batch: str | None = None  # the batch this request ran for: priced at the batch price


class Check(NamedTuple):
    """One counter of a reservation and what it limits, for messages and headers."""

    kind: str  # requests | tokens | audio | user_day | user_month | tier_day | tier_month
    counter: Counter


@dataclass(slots=True)
class Admission:
    """An admitted request. The pipeline uses ``headers`` and ``clamp_max_tokens`` only. Built
    by keyword, except once per request in ``Meter.admit`` (positional: binding eleven keywords
    costs some twice as much)."""

    headers: dict[str, str]  # x-ratelimit-* for the response
    # max_tokens to send upstream when not None: lower than requested, or the tier's cap
    # when the client sent none on a token-generating request
    clamp_max_tokens: int | None
    request: MeterRequest
    started: float  # the meter's clock at admission
    reserved: Amounts = NO_AMOUNTS
    checks: tuple[Check, ...] = ()  # empty: nothing to reconcile (refused by a quota)
    granted: tuple[int, ...] = field(default=())  # empty: admitted unchecked (store down)
    lease: str = ""  # the reservation's lease id, also when its reply was lost
    # worked out from ``checks`` once per plan (``plans.py``; empty: from the checks at settle)
    settle_layout: tuple[tuple[str, str, int, int], ...] = ()  # ``settle.settle_layout``
    lease_layout: tuple[tuple[str, tuple[tuple[int, str, str, int], ...]], ...] = ()
    # what it took from its levels' allowances, one per level (``allowances.py``; through a
    # joint, the same ``Through`` for each: ``allowance_joint.py``)
    uses: tuple[Taken, ...] = ()
