"""What one request carries from auth to the last byte; read once at the end."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config.model import Model
from gateway.errors import GatewayError
from gateway.metering.types import Admission, MeterRequest
from gateway.proxy.attempt_outcome import AttemptRecord
from gateway.proxy.auth import Principal
from gateway.proxy.routing import Endpoint, Plan
from gateway.proxy.streaming import StreamResult
from gateway.proxy.trace_hooks import RequestTrace

REQUEST_ID_MAX = 128
# A client's X-Request-Id is adopted only when it is made of these: an id travels into headers
# sent upstream, logs and spreadsheet exports, where '=', '+', '@', quotes or spaces could act.
SAFE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{REQUEST_ID_MAX}}}")


class RequestIds:
    """``req_`` + 32 hex digits, unique across processes: a random per-process half and a
    counter (uuid4 read the OS's random source for every request)."""

    def __init__(self) -> None:
        self._prefix = f"req_{secrets.token_hex(8)}"
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


@dataclass(slots=True)  # some 35 fields: as a dict they would be resized thrice per request
class RequestContext:
    request_id: str
    endpoint: Endpoint
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    requested_model: str | None = None  # the model or route the client named
    plan: Plan | None = None
    meter_request: MeterRequest | None = None  # once the plan is known
    admission: Admission | None = None  # once admitted
    model: Model | None = None  # the model that answered
    rollout: str | None = None  # the weighted chain entry the user was given (rollout.py)
    indicators: bool = True  # model-source indicators shown (flag together_ai_ui_indicators)
    downgraded: bool = False  # a cheaper model or fewer tokens than asked (downgrade.py)
    records: list[AttemptRecord] = field(default_factory=list)
    breaker_skipped: tuple[str, ...] = ()  # models of the chain passed over for open circuits
    cache: str | None = None  # "hit" | "miss" | "bypass" when the response cache applied
    cache_fallback: bool = False  # a stale cached answer stood in for a failed chain
    tags: tuple[str, ...] = ()  # x-gateway-tags / metadata.tags (proxy/tags.py)
    status: int = 200
    error: GatewayError | None = None
    usage: dict[str, Any] | None = None  # as the upstream reported it
    completion_chars: int = 0  # for the estimator when usage is missing
    stream: StreamResult | None = None
    images: int = 0
    audio_ms: int = 0
    upstream_started: float = 0.0
    upstream_opened: float = 0.0  # the answer in hand: a JSON answer whole, a stream's first chunk
    upstream_ended: float = 0.0
    overhead_s: float = 0.0  # the gateway's own time until the answer went out (overhead())
    ended: float = 0.0
    relayed: bool = False  # the answer went out as a relay (stream or binary)
    # The answer's breaker verdict waits for its end (it was relayed as it came).
    verdict_pending: bool = False
    upstream_failure: str | None = None  # the upstream failed after its first byte: why
    debug_body: dict[str, Any] | None = None  # the body, kept only when body logging is on
    trace: RequestTrace | None = None  # its spans, when tracing is configured
    # chat fields the Anthropic adapter cannot carry, dropped for the tier (chat_fields.py)
    dropped_fields: str = ""

    @classmethod
    def begin(
        cls, incoming_id: str | None, endpoint: Endpoint, new_id: Callable[[], str]
    ) -> RequestContext:
        """The client's id when it is safe (``SAFE_REQUEST_ID``), else a new one: nothing of an
        unsafe id is kept."""
        if incoming_id and SAFE_REQUEST_ID.fullmatch(incoming_id):
            return cls(incoming_id, endpoint)
        return cls(new_id(), endpoint)

    @property
    def fallback(self) -> bool:
        if not (self.plan and self.model):
            return False
        if self.cache == "hit":  # from the cache: a fallback only when it stood in (stale)
            return self.cache_fallback
        first = self.plan.chain[0]
        return self.model is not first and self.model.name != first.name  # deployments

    @property
    def attempts(self) -> int:
        return len(self.records)

    def completion_tokens(self) -> int | None:
        """As the upstream reported them, else one per relayed stream event."""
        value = (self.usage or {}).get("completion_tokens")
        if isinstance(value, int):
            return value
        if self.stream is not None:
            return self.stream.events or None
        return None

    def overhead(self, now: float) -> float:
        """Seconds spent in the gateway from the request's arrival until ``now`` (its answer's
        headers going out), less the upstream's share: from the first attempt until the answer
        opened (a JSON answer read whole, a stream's first chunk), retries and waits included."""
        if not self.upstream_started:
            return now - self.started
        answered = self.upstream_opened or self.upstream_ended or now  # ended: the chain failed
        return now - self.started - (answered - self.upstream_started)

    def fail(self, error: GatewayError) -> None:
        self.error = error
        self.status = error.status

    def indicator(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        """The x-gateway-* headers: which model answered, for whom, after how many tries;
        written into ``headers`` when given (as ``{**headers, **indicator()}`` would merge
        them, without the second dict)."""
        if headers is None:
            headers = {}
        headers["x-gateway-request-id"] = self.request_id
        headers["x-request-id"] = self.request_id
        if self.principal is not None:
            headers["x-gateway-tier"] = self.principal.tier.name
            if self.principal.byok:
                headers["x-gateway-byok"] = "true"
        if self.model is not None and self.indicators:
            headers["x-gateway-provider"] = self.model.upstream.name
            headers["x-gateway-model"] = self.model.name
            headers["x-gateway-upstream-model"] = self.model.upstream_model
            headers["x-gateway-fallback"] = "true" if self.fallback else "false"
            if self.model.deployment:
                headers["x-gateway-deployment"] = self.model.deployment
        if self.rollout is not None and self.indicators:
            headers["x-gateway-route"] = self.rollout
        if self.downgraded:
            headers["x-gateway-downgraded"] = "true"
        if self.cache is not None:
            headers["x-gateway-cache"] = self.cache
            if self.cache_fallback:
                headers["x-gateway-fallback"] = "cache"
        if records := self.records:
            headers["x-gateway-attempts"] = str(len(records))
        if self.admission is not None:
            headers.update(self.admission.headers)
        return headers

    def indicator_object(self) -> dict[str, Any]:
        """The same facts as a JSON object, for ``model_source_indicator`` in bodies."""
        model = self.model
        return {
            "provider": model.upstream.name if model else None,
            "model": model.name if model else None,
            "upstream_model": model.upstream_model if model else None,
            "tier": self.principal.tier.name if self.principal else None,
            "fallback": self.fallback,
            "attempts": self.attempts,
            "request_id": self.request_id,
        }
