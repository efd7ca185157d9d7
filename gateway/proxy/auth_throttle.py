"""Brute-force protection: wrong credentials counted per address and per credential prefix.

Counted in memory, per process.

Only failures are counted, so valid credentials add no work but one truth test of an empty
dict (``active``) and never cause a block. Once an address or a prefix has ``limit`` failures
within a fixed window, attempts from it get 429 with ``retry-after`` until the window ends:
every attempt on the sign-in and admin surfaces (valid or not: otherwise a wrong guess's 429 and
a right one's 200 would still tell them apart), only wrong client keys on the API (see
docs/security.md for why). Each failure is logged with the address and at most
``LOG_PREFIX`` characters of the credential, and a block once, never the secret. The counters
are bounded (``max_tracked`` entries per kind, the oldest dropped first) and per process: N
processes admit at most N times the limit (see docs/security.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import TooManyFailedAttempts

PREFIX_CHARS = 12  # the failures of credentials sharing this prefix are counted together
LOG_PREFIX = 8  # what a log line shows of a wrong credential
log = logging.getLogger("gateway.auth")


@dataclass(frozen=True)
class ThrottleSettings:
    window_s: float = 60.0
    address_limit: int = 30  # failures per address per window
    prefix_limit: int = 10  # failures per credential prefix per window
    max_tracked: int = 10_000  # entries per kind kept in memory


@dataclass
class _Window:
    start: float
    failures: int = 0


class AuthThrottle:
    def __init__(
        self,
        settings: ThrottleSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ThrottleSettings()
        self._clock = clock
        self._addresses: dict[str, _Window] = {}
        self._prefixes: dict[str, _Window] = {}
        self.active: dict[str, float] = {}  # "address:…"/"prefix:…" blocked → until when

    def check(self, address: str | None, credential: str) -> None:
        """429 if the address or the credential's prefix is blocked (call only if ``active``)."""
        now = self._clock()
        for name in (f"address:{address}", f"prefix:{credential[:PREFIX_CHARS]}"):
            until = self.active.get(name)
            if until is None:
                continue
            if now < until:
                raise _refusal(until - now)
            del self.active[name]

    def failed(self, surface: str, address: str | None, credential: str) -> None:
        """Count a wrong ``credential``; log it (its first characters only)."""
        now = self._clock()
        prefix = credential[:PREFIX_CHARS]
        shown = credential[:LOG_PREFIX] + "…"
        log.warning(
            "failed authentication",
            extra={"fields": {"event": "auth_failed", "surface": surface,
                              "address": address, "credential_prefix": shown}},
        )  # fmt: skip
        settings = self.settings
        if address is not None:
            self._count(self._addresses, f"address:{address}", settings.address_limit, now)
        self._count(self._prefixes, f"prefix:{prefix}", settings.prefix_limit, now, shown)

    def _count(
        self, windows: dict[str, _Window], name: str, limit: int, now: float, shown: str = ""
    ) -> None:
        window = windows.get(name)
        if window is None or now - window.start >= self.settings.window_s:
            window = windows[name] = _Window(now)
            self._bound(windows, now)
        window.failures += 1
        if window.failures >= limit and name not in self.active:
            until = window.start + self.settings.window_s
            self.active[name] = until
            what = name if name.startswith("address:") else f"prefix:{shown}"
            log.warning(
                "authentication blocked",
                extra={"fields": {"event": "auth_blocked", "for": what,
                                  "failures": window.failures, "seconds": round(until - now)}},
            )  # fmt: skip

    def _bound(self, windows: dict[str, _Window], now: float) -> None:
        if len(windows) <= self.settings.max_tracked:
            return
        for name in [n for n, w in windows.items() if now - w.start >= self.settings.window_s]:
            del windows[name]
        while len(windows) > self.settings.max_tracked:
            del windows[next(iter(windows))]  # the oldest window
        if len(self.active) > self.settings.max_tracked:
            for name in [n for n, until in self.active.items() if until <= now]:
                del self.active[name]


def _refusal(seconds: float) -> TooManyFailedAttempts:
    wait = max(1, math.ceil(seconds))
    return TooManyFailedAttempts(
        f"Too many failed authentication attempts; retry after {wait} s.",
        headers={"retry-after": str(wait)},
    )


def client_address(scope: Mapping[str, Any] | None) -> str | None:
    """The ASGI scope's client host (the proxy's client with --forwarded-allow-ips)."""
    client = scope.get("client") if scope is not None else None
    return str(client[0]) if client else None
