"""A level's quota windows (minute, hour, day, calendar month) in an IANA time zone.

Each window has an id (part of its counter's key) and the epoch second it resets at. Day and
month follow the zone's calendar (``zoneinfo``, daylight saving included: a day may last 23 or
25 hours); ids are the local ``YYYYMMDD`` and ``YYYYMM``. Minute and hour ids are the epoch
minute their window starts at, so the hour repeated when clocks go back is two windows, not
one. Every zone's offset is a whole number of minutes, so every window starts on an epoch
minute and the whole answer is computed once per (zone, minute).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

WINDOWS = ("minute", "hour", "day", "month")


class Window(NamedTuple):
    name: str  # minute | hour | day | month
    id: str
    reset: int  # epoch seconds


class ZonedWindows(NamedTuple):
    minute: Window
    hour: Window
    day: Window
    month: Window


def valid_zone(name: str) -> bool:
    """True for an IANA zone name this system knows (``UTC`` included)."""
    if name == "UTC":
        return True
    try:
        return name in _zone_names() and ZoneInfo(name) is not None
    except (ZoneInfoNotFoundError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def zoned(zone: str, now: float) -> ZonedWindows:
    """The windows of ``zone`` that hold the instant ``now``."""
    return _at_minute(zone, int(now // 60))


@functools.lru_cache(maxsize=256)
def _at_minute(zone: str, minute: int) -> ZonedWindows:
    tz = ZoneInfo(zone)
    start = minute * 60
    local = datetime.fromtimestamp(start, tz)
    offset = int((local.utcoffset() or timedelta()).total_seconds())
    hour_start = (start + offset) // 3600 * 3600 - offset
    day = datetime(local.year, local.month, local.day, tzinfo=tz)
    next_day = (day + timedelta(days=1)).date()
    next_month = (day.replace(day=1) + timedelta(days=32)).replace(day=1).date()
    return ZonedWindows(
        Window("minute", str(minute), start + 60),
        Window("hour", str(hour_start // 60), hour_start + 3600),
        Window(
            "day",
            day.strftime("%Y%m%d"),
            _midnight(next_day.year, next_day.month, next_day.day, tz),
        ),
        Window("month", day.strftime("%Y%m"), _midnight(next_month.year, next_month.month, 1, tz)),
    )


def _midnight(year: int, month: int, day: int, tz: ZoneInfo) -> int:
    """The epoch second a local date begins (a zone that skips midnight: the first instant
    after the gap, as ``zoneinfo`` resolves it)."""
    return int(datetime(year, month, day, tzinfo=tz).timestamp())
