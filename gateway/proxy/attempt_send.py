"""One upstream exchange: send a request and open its answer, or say how it failed."""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx

from gateway.config.model import Model, RetryPolicy
from gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.providers.bodies import (
    AnswerTooLarge,
    body_chunks,
    body_in_hand,
    plain_body,
    read_body,
)
from gateway.providers.openai import redact
from gateway.providers.transport import Transport, network_error_kind
from gateway.proxy.attempt_failure import encoded, status_failure
from gateway.proxy.attempt_outcome import API_KEY_EXTENSION, Failure, Opened, Verdict
from gateway.proxy.time_limit import TimeLimit
from gateway.secret import Secret


class Sender:
    """Sends one request through ``transport`` within the upstream's first-byte timeout."""

    def __init__(self, transport: Transport, policy: RetryPolicy, max_body_bytes: int) -> None:
        self._transport = transport
        self._policy = policy
        self._max_body_bytes = max_body_bytes

    async def send(
        self,
        model: Model,
        request: httpx.Request,
        buffered: bool,
        secrets: Iterable[Secret | None],
        deadline: float = float("inf"),
    ) -> Opened | Failure:
        """The answer opened (read whole when ``buffered``), or the failure and its verdict;
        cut at ``deadline`` (``time.monotonic()``) when that comes before the upstream's
        first-byte timeout."""
        timeout = model.upstream.first_byte_timeout_s
        left = deadline - time.monotonic()
        cut_by_deadline = left < timeout
        timeout = max(0.0, min(timeout, left))
        response: httpx.Response | None = None
        try:
            with TimeLimit(timeout):
                response = await self._transport.handle_async_request(request)
                if response.status_code >= 400:  # the key sent is scrubbed from its text too
                    sent = (*secrets, request.extensions.get(API_KEY_EXTENSION))
                    api = model.upstream.api
                    return await status_failure(response, self._policy, sent, api)
                if not plain_body(response):
                    await response.aclose()
                    return Failure(encoded(response), Verdict.NEXT, "bad_encoding")
                if buffered:  # most often all in already: no coroutine to read it
                    body = body_in_hand(response, self._max_body_bytes)
                    if body is None:
                        body = await read_body(response, self._max_body_bytes)
                    return Opened(model, response, body, None)
                rest = body_chunks(response)
                first = await anext(rest, b"")
                return Opened(model, response, first, rest)
        except AnswerTooLarge as too_large:
            return Failure(too_large, Verdict.NEXT, "too_large")
        except httpx.LocalProtocolError:
            await _close(response)  # refused before sending (e.g. a header value with CR/LF)
            refused: GatewayError = InvalidRequest(
                "The request could not be sent upstream as it is."
            )
            return Failure(refused, Verdict.FINAL, "request_invalid", local=True)
        except TimeoutError:
            await _close(response)
            if cut_by_deadline:  # the request's time ran out, not the upstream's: no verdict
                late = DeadlineExceeded("the request's deadline passed during this attempt")
                return Failure(late, Verdict.NEXT, "deadline", local=True)
            error = UpstreamTimeout(f"no response from upstream within {timeout:g}s")
            return Failure(error, Verdict.RETRY, "timeout")
        except httpx.RemoteProtocolError as exc:
            await _close(response)  # the wire client's text names the rule or limit broken
            broken = UpstreamError(f"The upstream's answer was refused: {redact(str(exc))[:300]}")
            return Failure(broken, Verdict.RETRY, "protocol_error")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            await _close(response)
            kind = network_error_kind(exc)
            if kind == "timeout":
                return Failure(UpstreamTimeout("upstream timed out"), Verdict.RETRY, kind)
            failure = UpstreamError(f"upstream connection failed ({kind})")
            return Failure(failure, Verdict.RETRY, kind)


async def _close(response: httpx.Response | None) -> None:
    if response is not None:
        await response.aclose()
