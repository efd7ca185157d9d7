"""The values the per-request metrics add to: a child's own, unlocked in one process.

prometheus_client's ``inc``/``observe`` check the labels, the amount and the exemplar on every
call, and a one-process value takes a lock for each addition: most of what a request's metrics
cost. ``Metrics.value`` hands out these values once per label set; the scrape reads the same
objects, so its output does not change.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import Gauge, Histogram
from prometheus_client.values import MutexValue


def value_of(child: Any) -> Any:
    """What ``Metrics.value`` hands out for a child: its value (``Unlocked`` in one process),
    ``Buckets`` for a histogram, or the child itself when its parts are not these."""
    if isinstance(child, Histogram):
        bounds, buckets, total = (getattr(child, name, None) for name in _HISTOGRAM_PARTS)
        if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
            return child
        buckets = child._buckets = [_unlocked(value) for value in buckets]
        total = child._sum = _unlocked(total)
        return Buckets(list(bounds), buckets, total)
    if isinstance(child, Gauge) and getattr(child, "_is_most_recent", True):
        return child  # a timestamped mode: set() keeps the time (none of ours)
    value = getattr(child, "_value", None)
    if value is None:
        return child
    value = child._value = _unlocked(value)
    return value


def _unlocked(value: Any) -> Any:
    """An ``Unlocked`` value in place of a one-process ``MutexValue`` (another: itself)."""
    return Unlocked(value.get()) if type(value) is MutexValue else value  # type: ignore[no-untyped-call]


class Unlocked:
    """A one-process metric value added to without ``MutexValue``'s lock (most of an ``inc``'s
    cost): the values ``Metrics.value`` hands out change only on the event loop's thread,
    where the scrape reads them too. Multiprocess values (files shared by the workers) keep
    their own class and lock."""

    __slots__ = ("_exemplar", "value")
    _multiprocess = False

    def __init__(self, value: float) -> None:
        # public: the per-request listeners add to it in place, without a call of ``inc``
        self.value, self._exemplar = value, None

    def inc(self, amount: float) -> None:
        self.value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self.value = value

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self.value

    def get_exemplar(self) -> Any:
        return self._exemplar


_HISTOGRAM_PARTS = ("_upper_bounds", "_buckets", "_sum")


class Buckets:
    """A histogram child's values, observed as ``Histogram.observe`` does without an
    exemplar: the sum, and the first bucket whose bound is at least the amount (none for NaN).
    """

    __slots__ = ("_bounds", "_buckets", "_local", "_sum", "_top")

    def __init__(self, bounds: list[float], buckets: list[Any], total: Any) -> None:
        self._bounds, self._buckets, self._sum, self._top = bounds, buckets, total, bounds[-1]
        # every part ``Unlocked`` (one process): added to in place, not through two calls of
        # ``inc`` per observation (a request observes three to five histograms)
        self._local = type(total) is Unlocked and all(type(b) is Unlocked for b in buckets)

    def observe(self, amount: float) -> None:
        if self._local:
            self._sum.value += amount
            if amount <= self._top:
                self._buckets[bisect_left(self._bounds, amount)].value += 1
            return
        self._sum.inc(amount)
        if amount <= self._top:
            self._buckets[bisect_left(self._bounds, amount)].inc(1)
