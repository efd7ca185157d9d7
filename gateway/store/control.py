"""The control plane's documents, version, change channel and audit stream in Redis.

All keys share the hash tag ``{gw:cp}`` so that on a cluster one script reads or writes all of
them atomically:

==========================  ======  =====================================================
key                         type    contents
==========================  ======  =====================================================
{gw:cp}:kind:KIND           hash    document id → JSON document
{gw:cp}:kinds               set     the kinds ever written
{gw:cp}:version             string  bumped by every write
{gw:cp}:audit               stream  one entry per operator change, field ``a`` = JSON
                                    (capped)
{gw:cp}:audit:user          stream  one entry per change a user made to what they own
                                    (capped on its own)
==========================  ======  =====================================================

Every write publishes ``VERSION:KIND:ID`` (the new version and the document it changed) on the
channel ``gw:cp:changed``, so that a reader one version behind reads just that document. On
Redis Cluster the asyncio client has no pub/sub, so there the readers' version poll is the
mechanism (a full reload per change).
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.store.port import AuditLog, ControlChange

TAG = "{gw:cp}"
KIND_PREFIX = f"{TAG}:kind:"
KINDS = f"{TAG}:kinds"
VERSION = f"{TAG}:version"
AUDIT = f"{TAG}:audit"
AUDIT_KEYS: dict[AuditLog, str] = {"operator": AUDIT, "user": f"{TAG}:audit:user"}
CHANNEL = "gw:cp:changed"

WRITE = """
if ARGV[2] == "set" then
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
else
  redis.call("HDEL", KEYS[1], ARGV[1])
end
redis.call("SADD", KEYS[4], ARGV[6])
local version = redis.call("INCR", KEYS[2])
redis.call("XADD", KEYS[3], "MAXLEN", "~", ARGV[5], "*", "a", ARGV[4])
if ARGV[7] ~= "" then
  redis.call("PUBLISH", ARGV[7], version .. ":" .. ARGV[6] .. ":" .. ARGV[1])
end
return version
"""

LOAD = """
local out = {redis.call("GET", KEYS[1]) or "0"}
for _, kind in ipairs(redis.call("SMEMBERS", KEYS[2])) do
  out[#out + 1] = kind
  out[#out + 1] = redis.call("HGETALL", ARGV[1] .. kind)
end
return out
"""


def kind_key(kind: str) -> str:
    return f"{KIND_PREFIX}{kind}"


async def write(
    client: Redis | RedisCluster,
    kind: str,
    id: str,
    value: bytes | None,
    audit: bytes,
    audit_maxlen: int,
    *,
    publish: bool,
    log: AuditLog = "operator",
) -> int:
    op = "set" if value is not None else "del"
    args = [id, op, value or b"", audit, audit_maxlen, kind, CHANNEL if publish else ""]
    keys = [kind_key(kind), VERSION, AUDIT_KEYS[log], KINDS]
    reply: Any = await cast(Any, client).eval(WRITE, len(keys), *keys, *args)
    return int(reply)


async def note(
    client: Redis | RedisCluster, audit: bytes, audit_maxlen: int, log: AuditLog = "operator"
) -> None:
    await client.xadd(AUDIT_KEYS[log], {"a": audit}, maxlen=audit_maxlen, approximate=True)


async def load(client: Redis | RedisCluster) -> tuple[int, dict[str, dict[str, bytes]]]:
    reply: Any = await cast(Any, client).eval(LOAD, 2, VERSION, KINDS, KIND_PREFIX)
    documents: dict[str, dict[str, bytes]] = {}
    for i in range(1, len(reply), 2):
        flat = reply[i + 1]
        documents[_text(reply[i])] = {
            _text(flat[j]): bytes(flat[j + 1]) for j in range(0, len(flat), 2)
        }
    return int(reply[0]), documents


async def read(client: Redis | RedisCluster, kind: str, id: str) -> bytes | None:
    found: Any = await client.hget(kind_key(kind), id)
    return bytes(found) if found is not None else None


def parse_change(data: bytes | str) -> ControlChange:
    """An announcement: ``VERSION:KIND:ID``, or a bare version (an older writer)."""
    version, _, rest = _text(data).partition(":")
    kind, _, id = rest.partition(":")
    return ControlChange(int(version), kind or None, id if kind else None)


async def version(client: Redis | RedisCluster) -> int:
    found: Any = await client.get(VERSION)
    return int(found) if found is not None else 0


async def audit_page(
    client: Redis | RedisCluster, before: str | None, count: int, log: AuditLog = "operator"
) -> list[tuple[str, bytes]]:
    top = f"({before}" if before else "+"
    entries: Any = await client.xrevrange(AUDIT_KEYS[log], max=top, min="-", count=count)
    return [(_text(entry_id), bytes(fields[b"a"])) for entry_id, fields in entries or ()]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
