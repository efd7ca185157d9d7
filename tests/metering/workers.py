"""Code run in child processes by the concurrency tests (importable by ``spawn``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.config.load import load_config
from gateway.errors import QuotaExceeded

from .helpers import Clock, metered, request

ROOT = Path(__file__).resolve().parents[2]


async def admit_many(url: str, count: int, options: dict[str, Any]) -> tuple[int, int]:
    """``count`` concurrent admits on a Meter of its own: (admitted, QuotaExceeded)."""
    config = load_config(ROOT, env={})
    async with metered(config, url, clock=Clock()) as (meter, _):
        results = await asyncio.gather(
            *(meter.admit(request(config, **options)) for _ in range(count)),
            return_exceptions=True,
        )
        assert meter.health.errors_total == 0
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, QuotaExceeded) for e in errors), errors[:1]
    return count - len(errors), len(errors)


def process_main(url: str, count: int, barrier: Any, results: Any) -> None:
    barrier.wait(timeout=30)
    results.put(asyncio.run(admit_many(url, count, {})))
