"""The hot-path scripts on a Redis Cluster: one pipelined connection per master, routed by slot.

redis-py's asyncio cluster client recycles every node's connections on each topology refresh,
and one refresh follows any connection error: under a burst of concurrent commands on cold
pools it closed connections other commands were using (``Connection closed by server``,
``RuntimeError``/``AttributeError`` from a closed transport), and the store flapped into
degraded mode on a healthy cluster. Here each master gets one ``PipelinedConnection`` that no
refresh closes: the slot map (``CLUSTER SLOTS``) is read once, updated by ``MOVED`` replies,
and read again after a connection fails; a command that could not connect is sent once more
after that refresh (it never ran), one whose connection was lost fails (it may have run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from gateway.store.redis.pipelined import ConnectFailed, PipelinedConnection, RedisEndpoint

SLOTS = 16384
MAX_REDIRECTS = 2
Address = tuple[str, int]


class ClusterPipelined:
    """``execute`` routes a command by its first key (``EVAL``/``EVALSHA``: the first of KEYS)."""

    def __init__(self, seed: RedisEndpoint) -> None:
        self._seed = seed
        self._known: list[Address] = [(seed.host, seed.port)]
        self._slots: list[Address | None] = [None] * SLOTS
        self._nodes: dict[Address, PipelinedConnection] = {}
        self._stale = True
        self._refreshing: asyncio.Future[None] | None = None

    async def execute(self, *args: str | bytes | int) -> Any:
        slot = key_slot(_as_bytes(_first_key(args)))
        for attempt in range(MAX_REDIRECTS + 1):
            address = await self._owner(slot)
            connection = self._connection(address)
            try:
                return await connection.execute(*args)
            except ResponseError as exc:
                redirect = _redirect(exc)
                if redirect is None or attempt == MAX_REDIRECTS:
                    raise
                kind, target = redirect
                if kind == "MOVED":
                    self._slots[slot], self._stale = target, True
                    continue
                return await _asking(self._connection(target), args)
            except ConnectFailed:
                self._stale = True
                if attempt == MAX_REDIRECTS:
                    raise
            except RedisError:
                self._stale = True  # lost mid-command: it may have run, do not send it again
                raise
        raise RedisClusterException("too many redirections")  # pragma: no cover

    async def aclose(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.aclose()

    # -- internals -------------------------------------------------------------------------

    async def _owner(self, slot: int) -> Address:
        if self._stale or self._slots[slot] is None:
            await self._refresh()
        address = self._slots[slot]
        if address is None:
            raise RedisClusterException(f"slot {slot} is not covered by the cluster")
        return address

    def _connection(self, address: Address) -> PipelinedConnection:
        connection = self._nodes.get(address)
        if connection is None:
            connection = PipelinedConnection(self._seed.at(*address))
            self._nodes[address] = connection
        return connection

    async def _refresh(self) -> None:
        """Read the slot map once for every command waiting on it (single flight)."""
        if self._refreshing is None:
            task = asyncio.get_running_loop().create_task(self._read_slots())
            self._refreshing = task
            task.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        await asyncio.shield(self._refreshing)

    async def _read_slots(self) -> None:
        error: BaseException | None = None
        for address in [*dict.fromkeys([*self._known, *self._owners()])]:
            try:
                reply = await self._connection(address).execute("CLUSTER", "SLOTS")
            except RedisError as exc:
                error = exc
                continue
            self._apply(address, reply)
            return
        raise error or RedisClusterException("no cluster node answered CLUSTER SLOTS")

    def _owners(self) -> list[Address]:
        return [address for address in dict.fromkeys(self._slots) if address is not None]

    def _apply(self, asked: Address, reply: Sequence[Any]) -> None:
        slots: list[Address | None] = [None] * SLOTS
        known = [asked]
        for entry in reply:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            host = _text(master[0]) or asked[0]
            address = (host, int(master[1]))
            slots[start : end + 1] = [address] * (end - start + 1)
            known += [address] + [(_text(n[0]) or asked[0], int(n[1])) for n in entry[3:]]
        self._slots, self._stale = slots, False
        self._known = list(dict.fromkeys(known))


async def _asking(connection: PipelinedConnection, args: Sequence[str | bytes | int]) -> Any:
    """``ASK`` (a slot being migrated): this one command on that node, after ``ASKING``
    (another command sent in between takes the flag: this one then fails, it is rare)."""
    await connection.execute("ASKING")
    return await connection.execute(*args)


def _first_key(args: Sequence[str | bytes | int]) -> str | bytes | int:
    name = str(_text(args[0])).upper() if isinstance(args[0], bytes | str) else ""
    if name in ("EVAL", "EVALSHA"):
        if int(args[2]) < 1:
            raise RedisClusterException(f"{name} without keys has no slot")
        return args[3]
    return args[1]


def _redirect(error: ResponseError) -> tuple[str, Address] | None:
    """``MOVED <slot> host:port`` / ``ASK <slot> host:port`` → (kind, address)."""
    parts = str(error).split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = parts[2].rpartition(":")
    return parts[0], (host, int(port))


def _as_bytes(value: str | bytes | int) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
