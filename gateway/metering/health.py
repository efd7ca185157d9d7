"""The store's health as the meter sees it: error count, degraded state, probe spacing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

PROBE_INTERVAL_S = 1.0


class StoreHealth:
    """Counts store errors and logs the degraded state once on entering and once on leaving.

    While degraded, admissions try the store at most once per ``probe_interval_s`` (the rest
    go straight to the ``on_store_error`` policy), so a black-holed Redis does not add its
    timeout to every request.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        on_error: Callable[[], None] | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.errors_total = 0
        self.degraded = False
        self._logger = logger
        self._on_error = on_error
        self._interval = probe_interval_s
        self._monotonic = monotonic
        self._next_probe = 0.0

    def should_try(self) -> bool:
        return not self.degraded or self._monotonic() >= self._next_probe

    def failed(self, error: Exception) -> None:
        self.errors_total += 1
        self._next_probe = self._monotonic() + self._interval
        if self._on_error is not None:
            self._on_error()
        if not self.degraded:
            self.degraded = True
            self._logger.warning(
                "metering store unavailable, serving degraded: %s",
                error,
                extra={"event": "metering_degraded", "error": str(error)},
            )

    def recovered(self) -> None:
        if self.degraded:
            self.degraded = False
            self._logger.warning(
                "metering store reachable again", extra={"event": "metering_recovered"}
            )
