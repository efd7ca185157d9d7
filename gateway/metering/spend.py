"""The port the meter tells each settle's new spend totals to (the usage room's cost alerts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.metering.buffer import Written
from gateway.metering.settle import Settlement, SpendKey


class SpendObserver(Protocol):
    """Told the new spend totals after each settle (the usage room's cost alerts)."""

    async def observe(self, settled: Sequence[tuple[Sequence[SpendKey], Sequence[int]]]) -> None:
        """Per settle written: its watched spend counters and their new totals."""
        ...

    def active(self) -> dict[str, bool]:
        """Every alert scope → crossed in the current window."""
        ...

    async def aclose(self, timeout_s: float) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop."""
        ...


def spend_hook(spend: SpendObserver | None) -> Written:
    """The settle writer's hook after each store call: the totals it returned, to ``spend``."""

    async def written(items: Sequence[Settlement], results: list[list[int]]) -> None:
        if spend is None:
            return
        # no totals: nothing watched, or the batch had already been applied
        settled = [(item.spend, totals) for item, totals in zip(items, results, strict=True)]
        await spend.observe([entry for entry in settled if entry[1]])

    return written
