"""Documents of many hashes read or written in one call: a script, or a cluster's pipeline.

The usage roller reads and writes every rollup document a run touched (one per level and
period, and one per user active in the run); each a command of its own cost ~10 times as much
Python per document as one script call for a chunk of them. A cluster spreads the documents
over its slots, which no script may span: there they go as one pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from gateway.store.redis.connection import RedisConnection
from gateway.store.redis.scripts import Script


def _script(text: str) -> Script:
    return Script(text, hashlib.sha1(text.encode()).hexdigest())


# KEYS: the hashes; ARGV[1]: the field. Returns each hash's field (nil when absent).
READ = _script(
    "local out = {}\n"
    "for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end\n"
    "return out\n"
)
# KEYS: the hashes; ARGV[1]: the field, then per hash its value and time to live (seconds).
WRITE = _script(
    "for i, key in ipairs(KEYS) do\n"
    "  redis.call('HSET', key, ARGV[1], ARGV[2 * i])\n"
    "  redis.call('EXPIRE', key, ARGV[2 * i + 1])\n"
    "end\n"
    "return #KEYS\n"
)


async def read_many(
    connection: RedisConnection, keys: Sequence[str], field: str
) -> list[bytes | None]:
    """Field ``field`` of each hash of ``keys`` (None where absent)."""
    if connection.cluster:
        async with connection.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, field)
            found = await pipe.execute()
    else:
        found = await _run(connection, READ, keys, [field])
    return [bytes(value) if value is not None else None for value in found]


async def write_many(
    connection: RedisConnection, field: str, documents: Sequence[tuple[str, bytes, int]]
) -> None:
    """Set ``field`` of each (key, value, ttl_s) and its hash's time to live, all at once."""
    if connection.cluster:
        async with connection.client.pipeline(transaction=False) as pipe:
            for key, value, ttl_s in documents:
                pipe.hset(key, field, value)
                pipe.expire(key, ttl_s)
            await pipe.execute()
        return
    args: list[str | bytes | int] = [field]
    for _, value, ttl_s in documents:
        args += (value, ttl_s)
    await _run(connection, WRITE, [key for key, _, _ in documents], args)


async def _run(
    connection: RedisConnection,
    script: Script,
    keys: Sequence[str],
    args: Sequence[str | bytes | int],
) -> Any:
    """``script`` by its sha, by its text when Redis does not hold it; on the client's pool,
    never on the request path's script connection (these replies can be large)."""
    client: Any = connection.client
    try:
        return await client.execute_command(*script.by_sha(keys, args))
    except NoScriptError:
        return await client.execute_command(*script.by_text(keys, args))
