"""Every foreign error becomes a store error at the store boundary, whatever its type."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from gateway.config.model import Settings
from gateway.store.factory import create_store
from gateway.store.port import Counter, StoreError
from gateway.store.redis.errors import guard as _guard
from tests.redis_fixture import REDIS_SERVER, command, free_port
from tests.scale.redis_ha import wait_for


def test_a_runtime_error_raised_inside_asyncio_is_a_store_error():
    async def library_fails():
        coroutine = asyncio.sleep(0)
        try:
            asyncio.run(coroutine)  # RuntimeError raised by asyncio's own code
        finally:
            coroutine.close()

    async def main():
        with pytest.raises(StoreError, match="RuntimeError"):
            await _guard(library_fails)

    asyncio.run(main())


def test_our_own_errors_are_not_disguised_as_store_errors():
    async def ours():
        raise RuntimeError("a bug of ours")

    async def main():
        with pytest.raises(RuntimeError, match="a bug of ours"):
            await _guard(ours)

    asyncio.run(main())


def test_a_cluster_whose_slots_are_not_covered_is_a_store_error(tmp_path):
    """A gateway started while a new cluster still converges: unavailable, not a 500."""
    port = free_port(with_bus=True)
    argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--dir", str(tmp_path), "--cluster-enabled", "yes"]  # and no slot assigned
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: command(port, "PING").startswith(b"+PONG"), process=process)
        asyncio.run(_reserve_and_read(f"redis+cluster://127.0.0.1:{port}"))
    finally:
        process.kill()
        process.wait()


async def _reserve_and_read(url: str) -> None:
    store = create_store(url, Settings())
    try:
        with pytest.raises(StoreError):  # the slot-routed scripts
            await store.reserve([Counter("gw:{u:a}:d:1", "req", 1, 10)], None)
        with pytest.raises(StoreError):  # redis-py's cluster client
            await store.read_hashes(["gw:{u:a}:d:1"])
    finally:
        await store.aclose()
