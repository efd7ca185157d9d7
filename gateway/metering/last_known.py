"""While the store is down: admit up to what each counter had left at its last reservation.

Every reservation's decision (granted or denied) tells this process, per limited counter, the
limit and what was left after it. While the store is unreachable and ``on_store_error`` is
"allow", a request is admitted only if each of its counters this process has seen still has
room for it by that figure, which it then spends; otherwise it gets the usual 429. Counters
the process never saw (a user's first request here, or a new day's key) admit as before.

So a user at their limit when the store went down stays refused, and one with R left is
admitted at most R more times per process (the figures are per process and go stale: with P
processes the overshoot of a counter is at most (P - 1) x R, plus the requests in flight).

Only an outage reads these figures, so a reservation costs one dictionary entry: the latest
decision per source (a ``plans.ReservationPlan``'s key), turned into per-counter figures when a
request is admitted unchecked. A source's earlier decisions name the same counters as its latest, or
counters of a window (or a key's limits) since gone, which no later request checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence

from gateway.metering.types import Check
from gateway.store.port import UNLIMITED, Decision

MAX_COUNTERS = 50_000  # forgotten all at once past this (users come from keys: bounded)


class LastKnown:
    def __init__(self, size: int = MAX_COUNTERS) -> None:
        self._size = size
        self._left: dict[tuple[str, str], tuple[int, int]] = {}  # (key, field) → (limit, left)
        # source → its latest reservation and when it came (not yet in ``_left``)
        self._pending: dict[Hashable, tuple[int, Sequence[Check], Decision]] = {}
        self._order = itertools.count()

    def record(self, source: Hashable, checks: Sequence[Check], decision: Decision) -> None:
        """Remember what the reservation left on each limited counter (``source``: where its
        checks came from; see the module's docstring)."""
        pending = self._pending
        pending[source] = (next(self._order), checks, decision)
        if len(pending) >= self._size:
            self._apply()

    def _apply(self) -> None:
        """The pending decisions into ``_left``, oldest first (a counter two sources share
        keeps the latest figure)."""
        left = self._left
        for _, checks, decision in sorted(self._pending.values(), key=_first):
            if len(left) >= self._size:
                left.clear()
            for (_, counter), limit, used, granted in zip(
                checks, decision.limits, decision.used, decision.granted, strict=True
            ):
                if limit != UNLIMITED:
                    room = limit - used - granted
                    left[counter.key, counter.field] = (limit, room if room > 0 else 0)
        self._pending.clear()

    def take(self, checks: Sequence[Check]) -> Decision | None:
        """None when the request fits what is known to be left (and is taken from it), else
        a denial naming the first counter it does not fit."""
        if self._pending:
            self._apply()
        entries = [self._left.get((c.counter.key, c.counter.field)) for c in checks]
        for index, (check, entry) in enumerate(zip(checks, entries, strict=True)):
            counter = check.counter
            if entry is not None and counter.fixed + (1 if counter.flex else 0) > entry[1]:
                return _denial(checks, entries, index)
        for check, entry in zip(checks, entries, strict=True):
            if entry is not None:
                limit, left = entry
                counter = check.counter
                spent = counter.fixed + min(counter.flex, left - counter.fixed)
                self._left[counter.key, counter.field] = (limit, left - spent)
        return None


def _first(entry: tuple[int, Sequence[Check], Decision]) -> int:
    return entry[0]


def _denial(
    checks: Sequence[Check], entries: Sequence[tuple[int, int] | None], denied: int
) -> Decision:
    limits = [e[0] if e else c.counter.limit for c, e in zip(checks, entries, strict=True)]
    used = [e[0] - e[1] if e else 0 for e in entries]
    return Decision(tuple(used), tuple(limits), (0,) * len(checks), denied)
