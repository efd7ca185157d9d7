"""The attempt chain: retry the same model, then fall back down the chain, behind breakers.

The schedule (which failures retry, how long to wait) is decided here and nowhere else.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Protocol

import httpx

from gateway.config.model import Model, RetryPolicy
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    NoTargetAvailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.providers import anthropic
from gateway.providers.bodies import AnswerTooLarge, body_chunks, plain_body, read_body
from gateway.providers.openai import MAX_ERROR_BODY, redact, upstream_error
from gateway.providers.transport import Transport, network_error_kind
from gateway.proxy.breaker import Breakers
from gateway.proxy.deployments import Balancer
from gateway.secret import Secret

PASS_THROUGH = frozenset({400, 401, 403, 413, 422})
# Answers about the caller's own upstream key (BYOK): no verdict on the model for everyone else.
OWN_CREDENTIAL_STATUSES = frozenset({401, 403, 429})
NEXT_MODEL_CODES = frozenset({"model_not_found", "model_not_available"})
API_KEY_EXTENSION = "gateway_api_key"  # the key a request carries: redacted from answers
MAX_KEY_SWITCHES = 8  # stored system keys tried in one attempt after refusals


class Verdict(Enum):
    RETRY = "retry"  # same model again after a backoff
    NEXT = "next"  # go to the next model at once
    FINAL = "final"  # the client's own problem: pass it through


@dataclass(frozen=True)
class AttemptRecord:
    model: str
    provider: str
    error_type: str | None  # None: this attempt succeeded
    seconds: float
    replayed: bool = False  # the transport sent it twice (the first provably never arrived)


@dataclass
class Opened:
    """A successful upstream answer: the first chunk read, the rest still to relay."""

    model: Model
    response: httpx.Response
    first_chunk: bytes
    rest: AsyncIterator[bytes] | None  # None when the body was read whole
    records: list[AttemptRecord] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.records)


class AttemptFailed(Exception):
    """Every target failed (or none could be tried); ``error`` is what the client gets."""

    def __init__(self, error: GatewayError, records: list[AttemptRecord]) -> None:
        super().__init__(error.message)
        self.error = error
        self.records = records


@dataclass
class _Failure:
    error: GatewayError
    verdict: Verdict
    error_type: str
    retry_after: float | None = None
    status: int | None = None  # the upstream's HTTP status, when it answered
    local: bool = False  # the request could not be sent: says nothing about the upstream
    replayed: bool = False


BuildRequest = Callable[[Model], httpx.Request | None]


class KeyFeedback(Protocol):
    def rejected(self, request: httpx.Request, status: int, retry_after: float | None) -> bool:
        """The upstream refused (401/403) or rate-limited (429) the stored system key of
        ``request``: set it aside; True when another key can be tried at once."""
        ...


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
        self._transport = transport
        self._policy = policy
        self._breakers = breakers
        self._sleep = sleep
        self._jitter = jitter
        self._max_body_bytes = max_body_bytes
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
    ) -> Opened:
        """``own_credentials``: the caller's own upstream key is used (BYOK); its rejections
        and rate limits do not count against the shared breakers."""
        records: list[AttemptRecord] = []
        skipped: list[str] = []
        last: _Failure | None = None
        for entry in chain:
            for model in self._balancer.order(entry):  # its deployments, least loaded first
                key = model.breaker_key
                if not self._breakers.allow(key):
                    skipped.append(f"{key}: circuit open")
                    continue
                began, ok = self._balancer.begin(model), False
                try:
                    request = _built(build, model, records)
                    if request is None:
                        self._breakers.release_probe(key)
                        skipped.append(f"{key}: no upstream credentials")
                        continue
                    outcome = await self._attempt_model(
                        model, request, build, buffered, secrets, records, own_credentials
                    )
                    ok = isinstance(outcome, Opened)
                except BaseException:
                    self._breakers.release_probe(key)  # cancelled: no verdict on the model
                    raise
                finally:
                    self._balancer.end(model, began, ok)
                if isinstance(outcome, Opened):
                    return outcome
                last = outcome
        raise AttemptFailed(_exhausted(last, records, skipped), records)

    async def _attempt_model(
        self,
        model: Model,
        request: httpx.Request,
        build: BuildRequest,
        buffered: bool,
        secrets: Iterable[Secret | None],
        records: list[AttemptRecord],
        own_credentials: bool,
    ) -> Opened | _Failure:
        """Try one model, retrying as the policy says; raise when the client's error is final."""
        outcome: Opened | _Failure
        for attempt in range(self._policy.attempts):
            if attempt:
                request = _built(build, model, records) or request
            outcome = await self._try_keys(
                model, request, build, buffered, secrets, records, own_credentials
            )
            if isinstance(outcome, Opened):
                self._breakers.record_success(model.breaker_key)
                return outcome
            self._judge(model, outcome, own_credentials)
            if outcome.verdict is Verdict.FINAL:
                raise AttemptFailed(outcome.error, records)
            delay = self._retry_delay(attempt, outcome)
            if delay is None:
                break
            await self._sleep(delay)
        return outcome

    async def _try_keys(
        self,
        model: Model,
        request: httpx.Request,
        build: BuildRequest,
        buffered: bool,
        secrets: Iterable[Secret | None],
        records: list[AttemptRecord],
        own_credentials: bool,
    ) -> Opened | _Failure:
        """One attempt; when the upstream refuses or rate-limits a stored system key, it is
        set aside and the attempt made again at once with the next key (no breaker verdict)."""
        outcome = await self._try(model, request, buffered, secrets, records)
        for _ in range(MAX_KEY_SWITCHES):
            if isinstance(outcome, Opened) or not self._key_rejected(
                request, outcome, own_credentials
            ):
                break
            rebuilt = _built(build, model, records)
            if rebuilt is None:
                break
            request = rebuilt
            outcome = await self._try(model, request, buffered, secrets, records)
        return outcome

    def _key_rejected(
        self, request: httpx.Request, failure: _Failure, own_credentials: bool
    ) -> bool:
        if self._keys is None or own_credentials or failure.status not in OWN_CREDENTIAL_STATUSES:
            return False
        return self._keys.rejected(request, failure.status, failure.retry_after)

    async def _try(
        self,
        model: Model,
        request: httpx.Request,
        buffered: bool,
        secrets: Iterable[Secret | None],
        records: list[AttemptRecord],
    ) -> Opened | _Failure:
        started = time.perf_counter()
        outcome = await self._send(model, request, buffered, secrets)
        if isinstance(outcome, Opened):
            error_type, replayed = None, _replayed(outcome.response)
        else:
            error_type, replayed = outcome.error_type, outcome.replayed
        seconds = time.perf_counter() - started
        records.append(
            AttemptRecord(model.name, model.upstream.name, error_type, seconds, replayed)
        )
        if isinstance(outcome, Opened):
            outcome.records = records
        return outcome

    async def _send(
        self, model: Model, request: httpx.Request, buffered: bool, secrets: Iterable[Secret | None]
    ) -> Opened | _Failure:
        timeout = model.upstream.first_byte_timeout_s
        secrets = (*secrets, request.extensions.get(API_KEY_EXTENSION))
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(timeout):
                response = await self._transport.handle_async_request(request)
                if response.status_code >= 400:
                    api = model.upstream.api
                    return await _status_failure(response, self._policy, secrets, api)
                if not plain_body(response):
                    await response.aclose()
                    return _Failure(_encoded(response), Verdict.NEXT, "bad_encoding")
                if buffered:
                    body = await read_body(response, self._max_body_bytes)
                    return Opened(model, response, body, None)
                rest = body_chunks(response)
                first = await anext(rest, b"")
                return Opened(model, response, first, rest)
        except AnswerTooLarge as too_large:
            return _Failure(too_large, Verdict.NEXT, "too_large")
        except httpx.LocalProtocolError:
            await _close(response)  # refused before sending (e.g. a header value with CR/LF)
            refused: GatewayError = InvalidRequest(
                "The request could not be sent upstream as it is."
            )
            return _Failure(refused, Verdict.FINAL, "request_invalid", local=True)
        except TimeoutError:
            await _close(response)
            error = UpstreamTimeout(f"no response from upstream within {timeout:g}s")
            return _Failure(error, Verdict.RETRY, "timeout")
        except httpx.RemoteProtocolError as exc:
            await _close(response)  # the wire client's text names the rule or limit broken
            broken = UpstreamError(f"The upstream's answer was refused: {redact(str(exc))[:300]}")
            return _Failure(broken, Verdict.RETRY, "protocol_error")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            await _close(response)
            kind = network_error_kind(exc)
            if kind == "timeout":
                return _Failure(UpstreamTimeout("upstream timed out"), Verdict.RETRY, kind)
            failure = UpstreamError(f"upstream connection failed ({kind})")
            return _Failure(failure, Verdict.RETRY, kind)

    def _judge(self, model: Model, failure: _Failure, own_credentials: bool) -> None:
        """What a failed attempt tells the model's breaker."""
        key = model.breaker_key
        if failure.local or (own_credentials and failure.status in OWN_CREDENTIAL_STATUSES):
            self._breakers.release_probe(key)
        elif failure.verdict is Verdict.FINAL:
            self._breakers.record_success(key)  # it answered: the client's own error
        else:
            self._breakers.record_failure(key)

    def _retry_delay(self, attempt: int, failure: _Failure) -> float | None:
        """Seconds to wait before trying the same model again, or None to move on."""
        if failure.verdict is not Verdict.RETRY or attempt + 1 >= self._policy.attempts:
            return None
        if failure.retry_after is not None and failure.retry_after > self._policy.max_retry_after_s:
            return None
        backoff: float = min(self._policy.max_backoff_s, self._policy.backoff_s * 2.0**attempt)
        jittered = backoff * (0.5 + self._jitter() / 2)
        return max(jittered, failure.retry_after or 0.0)


def classify_status(status: int, code: str | None, policy: RetryPolicy) -> Verdict:
    if status == 404 or code in NEXT_MODEL_CODES:
        return Verdict.NEXT
    if status in policy.on_status:
        return Verdict.RETRY
    if status in PASS_THROUGH or status < 500:
        return Verdict.FINAL
    return Verdict.NEXT


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """``retry-after-ms`` first, then ``retry-after`` as seconds or an HTTP date."""
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when: float = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


async def _status_failure(
    response: httpx.Response,
    policy: RetryPolicy,
    secrets: Iterable[Secret | None],
    api: str = "openai",
) -> _Failure:
    body = b""
    try:
        async for chunk in body_chunks(response):
            body += chunk
            if len(body) >= MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()
    content_type = response.headers.get("content-type", "")
    if api == "anthropic":  # its error types decide the status (529 overloaded → 503)
        error = anthropic.upstream_error(response.status_code, body, secrets)
    else:
        error = upstream_error(response.status_code, body, content_type, secrets)
    verdict = classify_status(error.status, error.code, policy)
    retry_after = retry_after_seconds(response.headers)
    if retry_after is not None:
        error.headers["retry-after"] = str(int(retry_after + 0.999))
    status = response.status_code
    replayed = _replayed(response)
    return _Failure(error, verdict, f"http_{status}", retry_after, status, replayed=replayed)


def _replayed(response: httpx.Response) -> bool:
    return bool(response.extensions.get("gateway_replayed"))


def _encoded(response: httpx.Response) -> UpstreamError:
    encoding = response.headers.get("content-encoding", "")[:40]
    return UpstreamError(
        f"The upstream answered with content-encoding {encoding!r}; the gateway asked for "
        "identity and does not decode answers."
    )


def _built(build: BuildRequest, model: Model, records: list[AttemptRecord]) -> httpx.Request | None:
    """``build(model)``, with a request that cannot be built (an invalid URL or header) as the
    client's error: its text may quote a credential, so it is not passed on."""
    try:
        return build(model)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
        message = "The request could not be built for the upstream."
        raise AttemptFailed(InvalidRequest(message), records) from exc


async def _close(response: httpx.Response | None) -> None:
    if response is not None:
        await response.aclose()


def _exhausted(
    last: _Failure | None, records: list[AttemptRecord], skipped: list[str]
) -> GatewayError:
    tried = [f"{r.model}: {r.error_type}" for r in records] + skipped
    summary = "; ".join(tried) or "no models in the chain"
    if last is None:
        return NoTargetAvailable(f"No upstream model could be tried ({summary}).")
    error = last.error
    error.message = f"All upstream attempts failed ({summary}). Last error: {error.message}"
    return error
