"""The reservation path: from ``Meter.admit`` to the socket write, at most 4 frames of ours.

The pipelined connection writes the commands queued in one turn of the event loop together,
from a callback, so the write's own call stack does not hold the request. What does is the
request task's chain of awaits at that moment (each coroutine's ``cr_await``): the test
wraps the socket transport's ``write`` and reads, for every task then waiting, the frames of
``gateway/`` below ``Meter.admit``. A real Redis answers.
"""

from __future__ import annotations

import asyncio
from asyncio import selector_events
from collections.abc import Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

import gateway
from gateway.config.model import Config
from gateway.metering import Meter
from gateway.store.factory import create_store
from tests.metering.helpers import Clock, request, run

OURS = str(Path(gateway.__file__).resolve().parent)
MOST_FRAMES = 4


def awaited_codes(task: asyncio.Task[Any]) -> Iterator[CodeType]:
    """The code of each coroutine in ``task``'s chain of awaits, outermost first."""
    awaitable: Any = task.get_coro()
    while awaitable is not None and hasattr(awaitable, "cr_code"):
        yield awaitable.cr_code
        awaitable = awaitable.cr_await


def below_admit(task: asyncio.Task[Any]) -> list[str] | None:
    """The qualified names of our frames under ``Meter.admit`` (None: not admitting)."""
    codes = list(awaited_codes(task))
    for index, code in enumerate(codes):
        if code.co_qualname == "Meter.admit" and code.co_filename.startswith(OURS):
            return [c.co_qualname for c in codes[index + 1 :] if c.co_filename.startswith(OURS)]
    return None


def test_a_reservation_reaches_the_socket_within_four_frames_of_ours(
    config: Config, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths: list[list[str]] = []
    write = selector_events._SelectorSocketTransport.write

    def watched(transport: Any, data: Any) -> None:
        for task in asyncio.all_tasks():
            path = below_admit(task)
            if path is not None:
                paths.append(path)
        write(transport, data)

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", watched)

    async def scenario() -> None:
        store = create_store(redis_url, config.settings)
        meter = Meter(config, store, clock=Clock(), sweep_interval_s=0)
        try:
            for index in range(3):  # the first one connects; the others find the connection
                await meter.admit(request(config, request_id=f"r{index}", max_tokens=50))
            await asyncio.gather(
                *(meter.admit(request(config, request_id=f"c{i}")) for i in range(4))
            )
        finally:
            await meter.aclose()
            await store.aclose()

    run(scenario())
    assert len(paths) >= 7, paths  # every reservation was seen at its write
    for path in paths:
        assert len(path) <= MOST_FRAMES, path
        assert path[0] == "Meter._reserve", path
        # grouped with the turn's others; alone by its text when Redis did not hold the script
        assert path[-1] in ("PipelinedConnection.execute_grouped", "PipelinedConnection.execute")
