"""What ``gateway check`` learns from the store: which upstreams have stored system keys.

The store is read only when a Redis URL is configured; when there is none, or it cannot be
read, the check says it could not count stored keys and goes on (it does not fail).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from gateway.config.model import Config

TIMEOUT_S = 5.0
NO_REDIS = "REDIS_URL is not set"


def stored_key_counts(config: Config, env: Mapping[str, str]) -> tuple[dict[str, int], str | None]:
    """(upstream → stored system keys, None), or ({}, why they could not be counted)."""
    from gateway.config.runtime import sentinel_url
    from gateway.store.port import StoreError

    redis_url = sentinel_url(env) or env.get("REDIS_URL")
    if not redis_url:
        return {}, NO_REDIS
    try:
        return asyncio.run(_read(config, redis_url)), None
    except (OSError, StoreError, TimeoutError) as error:
        return {}, f"cannot read the store at REDIS_URL ({error or type(error).__name__})"


async def _read(config: Config, redis_url: str) -> dict[str, int]:
    from gateway.control.upstream_keys import KIND, stored_counts
    from gateway.store.factory import create_store

    store = create_store(redis_url, config.settings)
    try:
        _, documents = await asyncio.wait_for(store.control_load(), TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(store.aclose(), TIMEOUT_S)
    return stored_counts(documents.get(KIND, {}))


def stored_key_notes(config: Config, env: Mapping[str, str]) -> tuple[set[str], list[str]]:
    """(upstreams with stored keys, the notes ``gateway check`` prints about them). A note
    says when they could not be counted: always when the store is unreachable; without a
    Redis URL only if some upstream's key variable is unset (else nothing depends on it)."""
    counts, unchecked = stored_key_counts(config, env)
    unset = [u for u in config.upstreams.values() if u.api_key_env and u.api_key is None]
    notes = [
        f"upstream {name}: {count} stored system key{'s' if count != 1 else ''}"
        for name, count in sorted(counts.items())
    ]
    if unchecked is not None and (unset or unchecked != NO_REDIS):
        notes.append(f"stored upstream keys not checked: {unchecked}")
    return set(counts), notes
