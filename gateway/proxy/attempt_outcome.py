"""What one upstream attempt yields: an opened answer or a failure with its verdict, and records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol

import httpx

from gateway.config.model import Model
from gateway.errors import GatewayError

API_KEY_EXTENSION = "gateway_api_key"  # the key a request carries: redacted from answers


class Verdict(Enum):
    RETRY = "retry"  # same model again after a backoff
    NEXT = "next"  # go to the next model at once
    FINAL = "final"  # the client's own problem: pass it through


class AttemptRecord(NamedTuple):
    """One attempt made (a NamedTuple rather than a frozen dataclass: one is built per
    attempt, and a frozen dataclass's ``__init__`` costs three times a tuple's)."""

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
    breaker_skipped: tuple[str, ...] = ()  # models passed over for an open circuit

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
class Failure:
    """A failed attempt: the client's error should it be the last, and what to do next."""

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


def was_replayed(response: httpx.Response) -> bool:
    """Whether the transport sent the request twice (the first provably never arrived)."""
    return bool(response.extensions.get("gateway_replayed"))
