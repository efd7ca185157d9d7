"""One round trip to reserve; settles share one script call (group commit): counted by the
Redis server itself."""

from __future__ import annotations

import re

from gateway.config import Config, Price

from .helpers import Clock, RedisServer, command, metered, ok, request, run


def calls(server: RedisServer) -> dict[str, int]:
    stats = command(server.port, "INFO", "commandstats").decode()
    return {name: int(n) for name, n in re.findall(r"cmdstat_(\w+):calls=(\d+)", stats)}


def test_one_script_call_per_admit_and_one_per_settle_batch(
    config: Config, redis_server: RedisServer
) -> None:
    redis_server.flushall()

    async def scenario() -> None:
        async with metered(config, redis_server.url, clock=Clock()) as (meter, _):
            meter.finish(await meter.admit(request(config)), ok())  # loads the script
            await meter.settled()
            command(redis_server.port, "CONFIG", "RESETSTAT")
            admissions = [
                await meter.admit(request(config, request_id=str(i), price=Price(input=1.0)))
                for i in range(5)
            ]
            for admission in admissions:
                meter.finish(admission, ok(10, 10, price=Price(input=1.0)))
            await meter.settled()
            seen = calls(redis_server)
            # five reservations, then the five settles in one script call
            assert (seen["evalsha"], seen["xadd"]) == (6, 5)
            # the rest runs inside the scripts (or sets up a new pooled connection)
            inside = {"hget", "hgetall", "hincrby", "expire", "hello", "client", "info"}
            assert set(seen) - {"evalsha", "xadd"} <= inside

    run(scenario())
