"""/v1/quota reads the counters and the leases at one moment: a request settling meanwhile
is never shown as used with its whole reservation (memory, Redis, Redis Cluster)."""

from __future__ import annotations

import asyncio

from tests.metering.helpers import Clock, metered, ok, request, run


def test_a_reservation_settling_while_the_view_is_read_never_shows_as_used(
    config, store_url
) -> None:
    """Each request reserves 310 tokens and settles 30: ``used`` is always a multiple of 30.
    A view that read the counters before a settle and the leases after it showed the 310 as
    used."""

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            seen: list[int] = []
            done = asyncio.Event()

            async def one(n: int) -> None:
                admitted = await meter.admit(
                    request(config, prompt=10, max_tokens=300, request_id=f"r{n}")
                )
                await asyncio.sleep(0)
                meter.finish(admitted, ok(10, 20))

            async def views() -> None:
                while not done.is_set():
                    view = await meter.users.quota_view("alice", config.tiers["free"])
                    seen.append(view["capabilities"]["text_generation"]["tokens"]["used"])
                    await asyncio.sleep(0)  # the memory store never yields on its own

            watcher = asyncio.create_task(views())
            for batch in range(10):
                await asyncio.gather(*(one(batch * 4 + n) for n in range(4)))
                await meter.settled()
            done.set()
            await watcher
            assert len(seen) >= 5  # views ran while requests settled
            assert [used for used in seen if used % 30] == []

    run(scenario())
