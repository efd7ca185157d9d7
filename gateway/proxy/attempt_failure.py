"""What a failed upstream answer means: its client error, its verdict and its retry-after."""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime

import httpx

from gateway.config.model import RetryPolicy
from gateway.errors import GatewayError, NoTargetAvailable, UpstreamError
from gateway.providers import anthropic
from gateway.providers.bodies import body_chunks
from gateway.providers.openai import MAX_ERROR_BODY, upstream_error
from gateway.proxy.attempt_outcome import AttemptRecord, Failure, Verdict, was_replayed
from gateway.secret import Secret

PASS_THROUGH = frozenset({400, 401, 403, 413, 422})
NEXT_MODEL_CODES = frozenset({"model_not_found", "model_not_available"})


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


async def status_failure(
    response: httpx.Response,
    policy: RetryPolicy,
    secrets: Iterable[Secret | None],
    api: str = "openai",
) -> Failure:
    """An answer of status 400 or above, read (a bounded part) and closed, as a ``Failure``."""
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
    sent_twice = was_replayed(response)
    return Failure(error, verdict, f"http_{status}", retry_after, status, replayed=sent_twice)


def encoded(response: httpx.Response) -> UpstreamError:
    """The error for an answer in a content-encoding the gateway does not decode."""
    encoding = response.headers.get("content-encoding", "")[:40]
    return UpstreamError(
        f"The upstream answered with content-encoding {encoding!r}; the gateway asked for "
        "identity and does not decode answers."
    )


def exhausted(
    last: Failure | None, records: list[AttemptRecord], skipped: list[str]
) -> GatewayError:
    """The client's error once the chain is done: the last failure, naming every attempt."""
    tried = [f"{r.model}: {r.error_type}" for r in records] + skipped
    summary = "; ".join(tried) or "no models in the chain"
    if last is None:
        return NoTargetAvailable(f"No upstream model could be tried ({summary}).")
    error = last.error
    error.message = f"All upstream attempts failed ({summary}). Last error: {error.message}"
    return error
