"""Issue 23 #15: the per-user day index is capped with the usage stream."""

from __future__ import annotations

import redis

from gateway.config.model import Config
from gateway.store import keys
from gateway.usage.records import UsageRecords

from .helpers import NOON, Clock, metered, ok, request, run, with_settings

MAXLEN = 20


def test_the_day_index_keeps_no_more_than_the_stream(config: Config, store_url: str | None) -> None:
    """Before: with ``usage_stream_maxlen: 2000`` one user's index grew to 9,716 entries."""
    capped = with_settings(config, usage_stream_maxlen=MAXLEN)

    async def scenario() -> None:
        async with metered(capped, store_url, clock=Clock()) as (meter, store):
            for index in range(MAXLEN * 3):
                wanted = request(capped, tier="enterprise", request_id=f"r{index}")
                admission = await meter.admit(wanted)
                meter.finish(admission, ok(10, 5))
                if index % 7 == 0:
                    await meter.settled()  # several settle calls, several records per call
            await meter.settled()
            mine = await UsageRecords(store, Clock()).read("alice", NOON - 3600, NOON + 3600)
            assert [r.request_id for r in mine] == [f"r{i}" for i in range(40, 60)]
            if store_url is not None:
                client = redis.Redis.from_url(store_url.replace("redis+cluster", "redis"))
                assert client.llen(keys.user_records("alice", "20261122")) == MAXLEN

    run(scenario())
