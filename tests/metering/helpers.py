"""Small builders shared by the metering tests (no mocks of the meter's own code)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

from gateway.config.model import Config, Price
from gateway.metering import Meter, MeterRequest, Outcome
from gateway.store.factory import create_store
from gateway.store.port import Store

try:
    from tests.redis_fixture import RedisServer, command
except ImportError:  # tests/ itself is on sys.path (no tests/__init__.py)
    from redis_fixture import RedisServer, command  # type: ignore[no-redef]

__all__ = [
    "NOON",
    "Clock",
    "RedisServer",
    "command",
    "metered",
    "ok",
    "request",
    "run",
    "with_settings",
]

T = TypeVar("T")
# 2026-11-22T12:00:00Z
NOON = 1795348800.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def with_settings(config: Config, **changes: Any) -> Config:
    return replace(config, settings=replace(config.settings, **changes))


def request(
    config: Config,
    *,
    user: str = "alice",
    tier: str = "free",
    capability: str = "text_generation",
    byok: bool = False,
    prompt: int = 10,
    max_tokens: int = 0,
    audio_ms: int = 0,
    price: Price | None = None,
    request_id: str = "req-1",
    images: int = 0,
    generates_tokens: bool = False,
) -> MeterRequest:
    return MeterRequest(
        request_id=request_id,
        user=user,
        key_id=f"key-{user}",
        tier=config.tiers[tier],
        capability=capability,
        byok=byok,
        prompt_tokens_estimate=prompt,
        max_output_tokens=max_tokens,
        audio_ms_estimate=audio_ms,
        price=price or Price(),
        images_estimate=images,
        generates_tokens=generates_tokens,
    )


def ok(
    prompt: int | None = 10,
    completion: int | None = 0,
    *,
    status: int = 200,
    price: Price | None = None,
    model: str = "llama-3.1-8b",
    **extra: Any,
) -> Outcome:
    return Outcome(
        status=status,
        model=model,
        provider="together",
        upstream_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
        price=price,
        prompt_tokens=prompt,
        completion_tokens=completion,
        **extra,
    )


@asynccontextmanager
async def metered(
    config: Config, url: str | None, **options: Any
) -> AsyncIterator[tuple[Meter, Store]]:
    """A started Meter on a fresh store; drained and closed on exit."""
    store = create_store(url, config.settings)
    meter = Meter(config, store, **options)
    await meter.start()
    try:
        yield meter, store
    finally:
        await meter.aclose()
        await store.aclose()
