"""The attempt chain: retry the same model, then fall back down the chain, behind breakers.

The schedule (which failures retry, how long to wait) is decided here and nowhere else; one
exchange is ``attempt_send``, what a failure means ``attempt_failure``, the outcomes
``attempt_outcome``. What every attempt of one request shares travels as an ``AttemptContext``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple

import httpx

from gateway.config.model import Model, RetryPolicy
from gateway.errors import DeadlineExceeded, InvalidRequest
from gateway.providers.transport import Transport
from gateway.proxy.attempt_failure import exhausted
from gateway.proxy.attempt_outcome import (
    AttemptFailed,
    AttemptRecord,
    BuildRequest,
    Failure,
    KeyFeedback,
    Opened,
    Verdict,
    was_replayed,
)
from gateway.proxy.attempt_send import Sender
from gateway.proxy.breaker import Breakers
from gateway.proxy.deployments import Balancer
from gateway.proxy.trace_hooks import AttemptTrace, RequestTrace
from gateway.secret import Secret

# Answers about the caller's own upstream key (BYOK): no verdict on the model for everyone else.
OWN_CREDENTIAL_STATUSES = frozenset({401, 403, 429})
MAX_KEY_SWITCHES = 8  # stored system keys tried in one attempt after refusals


class AttemptContext(NamedTuple):
    """What every attempt of one request shares, built once per ``Attempter.run`` (immutable;
    a NamedTuple rather than a frozen dataclass: built per request, it must cost next to
    nothing, and a frozen dataclass's ``__init__`` costs several times a tuple's)."""

    build: BuildRequest  # the upstream request for a model (rebuilt per attempt: fresh keys)
    buffered: bool  # the answer is read whole (JSON), not relayed as it comes
    secrets: Iterable[Secret | None]  # scrubbed from whatever an upstream echoes back
    records: list[AttemptRecord]  # one per attempt made, appended as they end
    own_credentials: bool  # the caller's own upstream key (BYOK): no breaker verdicts on 401s
    deadline: float  # time.monotonic() by which an answer must have opened
    trace: RequestTrace | None  # each attempt gets a span of its own


class Attempter:
    def __init__(
        self,
        transport: Transport,
        policy: RetryPolicy,
        breakers: Breakers,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        max_body_bytes: int = 64 * 1024 * 1024,
        balancer: Balancer | None = None,
        keys: KeyFeedback | None = None,
    ) -> None:
        """``max_body_bytes``: the most of an answer read whole (JSON) before it is refused;
        ``balancer`` orders a model's deployments (a failed one is retried on a sibling);
        ``keys`` hears of stored system keys the upstream refused (``Credentials``)."""
        self._sender = Sender(transport, policy, max_body_bytes)
        self._policy = policy
        self._breakers = breakers
        self._sleep = sleep
        self._jitter = jitter
        self._balancer = balancer or Balancer()
        self._keys = keys

    async def run(
        self,
        chain: tuple[Model, ...],
        build: BuildRequest,
        *,
        buffered: bool,
        secrets: Iterable[Secret | None] = (),
        own_credentials: bool = False,
        trace: RequestTrace | None = None,
    ) -> Opened:
        """``own_credentials``: the caller's own upstream key is used (BYOK); its rejections
        and rate limits do not count against the shared breakers. ``trace``: each attempt
        gets a span of its own (retries and fallbacks are siblings)."""
        records: list[AttemptRecord] = []
        skipped: list[str] = []
        open_circuits: list[str] = []
        last: Failure | None = None
        deadline = time.monotonic() + self._policy.deadline_s
        context = AttemptContext(
            build, buffered, secrets, records, own_credentials, deadline, trace
        )
        balancer = self._balancer
        for entry in chain:
            # its deployments, least loaded first (the balancer asked only when it has some)
            for model in balancer.order(entry) if entry.deployments else (entry,):
                if time.monotonic() >= deadline:
                    raise AttemptFailed(self._late(records, skipped), records)
                key = model.breaker_key
                if not self._breakers.allow(key):
                    skipped.append(f"{key}: circuit open")
                    open_circuits.append(model.name)
                    continue
                # the balancer counts deployments only: no calls for a model without any
                balanced = model.deployment is not None
                began, ok = balancer.begin(model) if balanced else 0.0, False
                try:
                    request = _built(build, model, records)
                    if request is None:
                        self._breakers.release_probe(key)
                        skipped.append(f"{key}: no upstream credentials")
                        continue
                    outcome = await self._attempt_model(model, request, context)
                    ok = isinstance(outcome, Opened)
                except BaseException:
                    self._breakers.release_probe(key)  # cancelled: no verdict on the model
                    raise
                finally:
                    if balanced:
                        balancer.end(model, began, ok)
                if isinstance(outcome, Opened):
                    outcome.breaker_skipped = tuple(open_circuits)
                    return outcome
                if outcome.error_type == "deadline":
                    # cut by the deadline on the loop's clock (uvloop's counts whole
                    # milliseconds), which can be a little behind time.monotonic()
                    raise AttemptFailed(self._late(records, skipped), records)
                last = outcome
        if time.monotonic() >= deadline:
            raise AttemptFailed(self._late(records, skipped), records)
        raise AttemptFailed(exhausted(last, records, skipped), records)

    def _late(self, records: list[AttemptRecord], skipped: list[str]) -> DeadlineExceeded:
        tried = "; ".join([f"{r.model}: {r.error_type}" for r in records] + skipped)
        return DeadlineExceeded(
            f"No upstream answered within the request's {self._policy.deadline_s:g} s deadline"
            f" (retry.deadline_s); tried: {tried or 'none'}."
        )

    async def _attempt_model(
        self, model: Model, request: httpx.Request, context: AttemptContext
    ) -> Opened | Failure:
        """Try one model, retrying as the policy says; raise when the client's error is final."""
        outcome: Opened | Failure
        for attempt in range(self._policy.attempts):
            if attempt:
                request = _built(context.build, model, context.records) or request
            # ``_starting`` inlined: once per request
            trace, started = context.trace, time.perf_counter()
            span = trace.attempt(model, request) if trace is not None else None
            sent = self._sender.send(
                model, request, context.buffered, context.secrets, context.deadline
            )
            outcome = self._ended(model, await sent, context, started, span)
            if not isinstance(outcome, Opened):
                outcome = await self._other_keys(model, request, outcome, context)
            if isinstance(outcome, Opened):
                if outcome.rest is None:
                    self._breakers.record_success(model.breaker_key)
                else:  # relayed as it comes: the verdict waits for its end (answer_ended)
                    self._breakers.record_started(model.breaker_key)
                return outcome
            self._judge(model, outcome, context.own_credentials)
            if outcome.verdict is Verdict.FINAL:
                raise AttemptFailed(outcome.error, context.records)
            delay = self._retry_delay(attempt, outcome)
            if delay is None or time.monotonic() + delay >= context.deadline:
                break
            await self._sleep(delay)
        return outcome

    async def _other_keys(
        self, model: Model, request: httpx.Request, failed: Failure, context: AttemptContext
    ) -> Opened | Failure:
        """After a failed attempt: when the upstream refused or rate-limited a stored system
        key, it is set aside and the attempt made again at once with the next key (no
        breaker verdict)."""
        outcome: Opened | Failure = failed
        for _ in range(MAX_KEY_SWITCHES):
            if time.monotonic() >= context.deadline:
                break
            if isinstance(outcome, Opened) or not self._key_rejected(
                request, outcome, context.own_credentials
            ):
                break
            rebuilt = _built(context.build, model, context.records)
            if rebuilt is None:
                break
            request = rebuilt
            started, span = self._starting(model, request, context)
            sent = self._sender.send(
                model, request, context.buffered, context.secrets, context.deadline
            )
            outcome = self._ended(model, await sent, context, started, span)
        return outcome

    def _key_rejected(
        self, request: httpx.Request, failure: Failure, own_credentials: bool
    ) -> bool:
        if self._keys is None or own_credentials or failure.status not in OWN_CREDENTIAL_STATUSES:
            return False
        return self._keys.rejected(request, failure.status, failure.retry_after)

    # One attempt is ``_starting``, the sender's exchange awaited where the attempt is made,
    # then ``_ended``: no coroutine of its own around the exchange (each one is crossed again
    # by every wait on the upstream).

    def _starting(
        self, model: Model, request: httpx.Request, context: AttemptContext
    ) -> tuple[float, AttemptTrace | None]:
        trace = context.trace
        return time.perf_counter(), trace.attempt(model, request) if trace is not None else None

    def _ended(
        self,
        model: Model,
        outcome: Opened | Failure,
        context: AttemptContext,
        started: float,
        span: AttemptTrace | None,
    ) -> Opened | Failure:
        """The attempt's record (and its span's end) once its exchange is over."""
        if span is not None:
            span.ended(outcome)
        if isinstance(outcome, Opened):
            error_type, replayed = None, was_replayed(outcome.response)
        else:
            error_type, replayed = outcome.error_type, outcome.replayed
        seconds = time.perf_counter() - started
        records = context.records
        records.append(
            AttemptRecord(model.name, model.upstream.name, error_type, seconds, replayed)
        )
        if isinstance(outcome, Opened):
            outcome.records = records
        return outcome

    def answer_ended(self, model: Model, failure: str | None) -> None:
        """The breaker's verdict on an answer relayed as it came, once it ended: ``failure``
        says how the upstream failed after its first byte (None: it did not)."""
        if failure is None:
            self._breakers.record_success(model.breaker_key)
        else:
            self._breakers.record_failure(model.breaker_key)

    def _judge(self, model: Model, failure: Failure, own_credentials: bool) -> None:
        """What a failed attempt tells the model's breaker."""
        key = model.breaker_key
        if failure.local or (own_credentials and failure.status in OWN_CREDENTIAL_STATUSES):
            self._breakers.release_probe(key)
        elif failure.verdict is Verdict.FINAL:
            self._breakers.record_success(key)  # it answered: the client's own error
        else:
            self._breakers.record_failure(key)

    def _retry_delay(self, attempt: int, failure: Failure) -> float | None:
        """Seconds to wait before trying the same model again, or None to move on."""
        if failure.verdict is not Verdict.RETRY or attempt + 1 >= self._policy.attempts:
            return None
        if failure.retry_after is not None and failure.retry_after > self._policy.max_retry_after_s:
            return None
        backoff: float = min(self._policy.max_backoff_s, self._policy.backoff_s * 2.0**attempt)
        jittered = backoff * (0.5 + self._jitter() / 2)
        return max(jittered, failure.retry_after or 0.0)


def _built(build: BuildRequest, model: Model, records: list[AttemptRecord]) -> httpx.Request | None:
    """``build(model)``, with a request that cannot be built (an invalid URL or header) as the
    client's error: its text may quote a credential, so it is not passed on."""
    try:
        return build(model)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
        message = "The request could not be built for the upstream."
        raise AttemptFailed(InvalidRequest(message), records) from exc
