"""Quota windows: a UTC day (reset at midnight) and a UTC month (reset on the 1st)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Counters outlive their window by this much, so a late settle still finds its keys.
# (TTLs are relative, so the Redis server's clock never needs to agree with the meter's.)
COUNTER_GRACE_S = 86_400
# Per-user and per-model daily aggregates are kept this long.
AGGREGATE_TTL_S = 400 * 86_400


@dataclass(slots=True)
class Windows:
    now: float
    day: str  # "20261122"
    month: str  # "202611"
    day_reset: int  # epoch seconds of the next UTC midnight
    month_reset: int  # epoch seconds of the next first of the month, 00:00 UTC

    def day_ttl(self) -> int:
        """Seconds a day counter lives: to the reset, plus the grace."""
        return seconds_until(self.day_reset, self.now) + COUNTER_GRACE_S

    def month_ttl(self) -> int:
        return seconds_until(self.month_reset, self.now) + COUNTER_GRACE_S


def windows_at(now: float) -> Windows:
    return Windows(now, *_calendar(int(now // 86_400)))


def day_and_month(now: float) -> tuple[str, str]:
    """``windows_at(now)``'s day and month ids ("20261122", "202611")."""
    day, month, _, _ = _calendar(int(now // 86_400))
    return day, month


@functools.lru_cache(maxsize=4)
def _calendar(day_number: int) -> tuple[str, str, int, int]:
    """Day id, month id and both resets for a UTC day; the same all day, so computed once."""
    midnight = datetime.fromtimestamp(day_number * 86_400, UTC)
    next_day = midnight + timedelta(days=1)
    next_month = (midnight.replace(day=1) + timedelta(days=32)).replace(day=1)
    return (
        midnight.strftime("%Y%m%d"),
        midnight.strftime("%Y%m"),
        int(next_day.timestamp()),
        int(next_month.timestamp()),
    )


def iso_utc(epoch: float, *, millis: bool = False) -> str:
    """``2026-11-23T00:00:00Z`` (with ``.123`` milliseconds when asked): what
    ``datetime.fromtimestamp(epoch, UTC).isoformat()`` gives, without a datetime per call
    (every usage record has one)."""
    if epoch < 0:
        text = datetime.fromtimestamp(epoch, UTC).isoformat(
            timespec="milliseconds" if millis else "seconds"
        )
        return text.replace("+00:00", "Z")
    fraction, whole = math.modf(epoch)
    seconds = int(whole)
    micros = round(fraction * 1e6)  # datetime's rounding (half to even) to microseconds
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    if millis:
        return f"{_iso_second(seconds)}.{micros // 1000:03d}Z"
    return _iso_second(seconds) + "Z"


@functools.lru_cache(maxsize=64)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def seconds_until(reset: int, now: float) -> int:
    return max(0, math.ceil(reset - now))


def duration(seconds: int) -> str:
    """Go-style duration as OpenAI uses in ``x-ratelimit-reset-*``: ``1h2m3s``, ``6m0s``, ``7s``."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
