"""What the overview and usage-analytics pages show, computed from the analytics (rollups)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.usage.analytics import Analytics, UsageFilter

PERIODS = {"24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
BREAKDOWNS = ("model", "provider", "tier")
PAGE_SIZE = 50


def headline(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One period's totals with error and fallback rates (zeros when nothing happened)."""
    sums = {
        name: sum(row[name] for row in rows)
        for name in ("requests", "total_tokens", "cost_usd", "errors", "fallbacks")
    }
    requests = sums["requests"]
    p95 = [row["p95_latency_ms"] for row in rows if row.get("p95_latency_ms") is not None]
    return {
        **sums,
        "error_rate": sums["errors"] / requests if requests else 0.0,
        "fallback_rate": sums["fallbacks"] / requests if requests else 0.0,
        "p95_latency_ms": max(p95) if p95 else None,
    }


def chart(rows: Sequence[dict[str, Any]], start: float, end: float, bucket: str) -> dict[str, Any]:
    """Requests, errors and cost per bucket, every bucket of ``[start, end)`` present."""
    step, form = (3600, "%Y-%m-%dT%H") if bucket == "hour" else (86_400, "%Y-%m-%d")
    found = {row["bucket"]: row for row in rows}
    labels: list[str] = []
    moment = int(start // step) * step
    while moment < end and len(labels) < 2000:
        labels.append(datetime.fromtimestamp(moment, UTC).strftime(form))
        moment += step
    labels = sorted(set(labels) | set(found))
    return {
        "labels": labels,
        "series": {
            name: [found[label][name] if label in found else 0 for label in labels]
            for name in ("requests", "errors", "cost_usd")
        },
    }


def with_rates(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**row, "error_rate": row["errors"] / row["requests"] if row["requests"] else 0.0}
        for row in sorted(rows, key=lambda r: -r["requests"])
    ]


async def overview_view(analytics: Analytics, now: float, period: str) -> dict[str, Any]:
    if period not in PERIODS:
        period = "24h"
    filters = {name: UsageFilter(now - seconds, now) for name, seconds in PERIODS.items()}
    chosen = filters[period]
    bucket = "hour" if period == "24h" else "day"
    # one query at a time: each reads a few documents at once, and the store's connections
    # are shared with the request path
    totals = [await analytics.totals(flt, [], "all") for flt in filters.values()]
    totals += [await analytics.totals(chosen, [name], "all") for name in BREAKDOWNS]
    totals.append(await analytics.totals(chosen, [], bucket))
    headlines = {name: headline(rows) for name, rows in zip(PERIODS, totals, strict=False)}
    breakdowns = {
        name: with_rates(rows) for name, rows in zip(BREAKDOWNS, totals[3:6], strict=True)
    }
    series = totals[6]
    return {
        "period": period,
        "periods": list(PERIODS),
        "headlines": headlines,
        "breakdowns": breakdowns,
        "chart": chart(series, chosen.start, chosen.end, bucket),
        "source": analytics.source,
    }


async def analytics_view(
    analytics: Analytics, flt: UsageFilter, group_by: list[str], bucket: str, cursor: str | None
) -> dict[str, Any]:
    # the records first: the totals' refresh then folds every record the page lists, so a
    # request billed while the page is built is in both or only in the totals, never listed
    # but missing from them
    found, next_cursor = await analytics.records(flt, PAGE_SIZE, cursor)
    series = await analytics.totals(flt, [], bucket)
    groups = await analytics.totals(flt, group_by, "all")
    return {
        "summary": headline(series),
        "group_by": group_by[0],
        "bucket": bucket,
        "groups": with_rates(groups),
        "records": [record.as_dict() for record in found],
        "next_cursor": next_cursor,
        "chart": chart(series, flt.start, flt.end, bucket),
        "source": analytics.source,
    }
