"""One Redis connection shared by every request of a process, for the two hot-path scripts.

Redis answers the commands of a connection in the order they were sent, so concurrent
requests can all write to one socket and each wait for its own reply (a queue of futures):
they are pipelined without a pool, a lock, or a round trip each. hiredis packs the commands
and parses the replies. redis-py stays for everything else (cluster, reads, admin writes);
it spent about as much CPU per call as the rest of the metering together.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class ConnectFailed(RedisConnectionError):
    """No connection could be made: the command was never sent, so it is safe to send again."""


Item = TypeVar("Item")


class GroupFailed(ResponseError):
    """A grouped command of several members got an error reply: the call wrote nothing (the
    group's command promises it), so each member may be sent again alone to get its own."""

    def __init__(self, error: ResponseError) -> None:
        super().__init__(str(error))
        self.error = error


class CommandGroup(Protocol[Item]):
    """Joins the members queued in one turn of the event loop into one command (group commit):
    one member gives the command it would be alone; the reply is split back per member."""

    def command(self, members: list[Item]) -> bytes: ...

    def replies(self, reply: Any, count: int) -> list[Any]: ...


class ScriptRunner(Protocol):
    """What the store needs of a hot-path connection (this module's, or the cluster's)."""

    async def execute(self, *args: str | bytes | int) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class RedisEndpoint:
    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 1.0
    command_timeout_s: float = 2.0

    def at(self, host: str, port: int) -> RedisEndpoint:
        """The same credentials and timeouts at another address."""
        return replace(self, host=host, port=port)


# Where the master is now (Sentinel): asked again before each new connection.
Resolver = Callable[[RedisEndpoint], Awaitable[RedisEndpoint]]


class PipelinedConnection:
    """``execute`` sends one command and returns its reply; errors are redis-py's exceptions.

    All the commands waiting for a connection share one connect attempt (and its failure).
    A command that outlives its timeout fails alone: its reply, when it comes, is skipped, and
    the commands behind it keep waiting for theirs until their own timeouts. Only when nothing
    has been heard for twice the command timeout while commands wait is the connection
    declared dead and closed, failing the commands still waiting (which may have run).
    A lost connection fails every command in flight and the next one reconnects. ``resolve``,
    when given, names the address before each connect (the master a Sentinel reports); a
    ``READONLY`` reply (a master demoted by a failover) closes the connection so that the
    next command reconnects to the new master.
    """

    def __init__(self, endpoint: RedisEndpoint, resolve: Resolver | None = None) -> None:
        self._endpoint = endpoint
        self._resolve = resolve
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future[_RespProtocol] | None = None

    async def execute(self, *args: str | bytes | int) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        try:
            return await protocol.send(pack(args), self._endpoint.command_timeout_s)
        except ResponseError as exc:
            if self._resolve is not None and str(exc).startswith("READONLY"):
                protocol.close()
            raise

    async def execute_grouped(self, group: CommandGroup[Item], member: Item) -> Any:
        """``member``'s reply, its command joined with the others of ``group`` queued in this
        turn (``CommandGroup``); a group of several that got an error reply raises
        ``GroupFailed`` in each member."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        try:
            return await protocol.send_grouped(group, member, self._endpoint.command_timeout_s)
        except ResponseError as exc:
            if self._resolve is not None and str(exc).startswith("READONLY"):
                protocol.close()
            raise

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            task = asyncio.get_running_loop().create_task(self._open())
            task.add_done_callback(self._connected)
            self._connecting = task
        # shielded: a waiter cancelled does not cancel the attempt the others wait for
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Future[_RespProtocol]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._protocol = task.result()

    async def _open(self) -> _RespProtocol:
        endpoint = self._endpoint
        if self._resolve is not None:
            endpoint = await self._resolve(endpoint)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(endpoint.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _RespProtocol(loop, 2 * endpoint.command_timeout_s),
                    endpoint.host,
                    endpoint.port,
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"Redis connection failed: {exc}") from exc
        try:
            await _handshake(protocol, endpoint)
        except BaseException:
            protocol.close()  # refused credentials or database: do not keep the socket
            raise
        return protocol


async def _handshake(protocol: _RespProtocol, endpoint: RedisEndpoint) -> None:
    timeout = endpoint.connect_timeout_s
    if endpoint.password is not None:
        credentials = (endpoint.username, endpoint.password) if endpoint.username else ()
        auth = credentials or (endpoint.password,)
        await protocol.send(pack(("AUTH", *auth)), timeout)
    if endpoint.db:
        await protocol.send(pack(("SELECT", endpoint.db)), timeout)


class _RespProtocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, dead_after_s: float) -> None:
        self._loop = loop
        self._reader = hiredis.Reader(replyError=ResponseError)
        # one future per command sent, in order; a timed-out one stays until its reply comes
        self._pending: deque[_Answerable] = deque()
        self._deadlines: deque[float] = deque()  # each pending command's, in the same order
        # One timer for all the commands in flight, due at the earliest deadline: a timer per
        # command cost more than the command's own bookkeeping.
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._outbox: list[bytes] = []
        # the groups with members this turn: their command's place in the outbox, and members
        self._groups: dict[CommandGroup[Any], _Queued[Any]] = {}
        self._dead_after_s = dead_after_s
        self._heard = loop.time()  # when the last reply arrived (or the connection opened)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._heard = self._loop.time()
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._pending:  # nothing was asked: the stream cannot be trusted
                self.close()
                return
            waiter = self._pending.popleft()
            self._deadlines.popleft()
            if waiter.done():
                continue
            if isinstance(reply, ResponseError):
                waiter.set_exception(_reply_error(reply))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        while self._pending:
            waiter = self._pending.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError("Connection to Redis lost"))

    def send(self, command: bytes, timeout: float) -> asyncio.Future[Any]:
        """Queue ``command`` for this turn's write; the future gets its reply. Not a
        coroutine: the caller awaits the reply itself, one frame fewer on the hot path."""
        waiter = self._loop.create_future()
        self._enqueue(waiter, timeout)
        self._outbox.append(command)
        return waiter

    def send_grouped(
        self, group: CommandGroup[Item], member: Item, timeout: float
    ) -> asyncio.Future[Any]:
        """Queue ``member`` of ``group``: its command goes out at this turn's write, where the
        group's first member was queued, with the members queued after it."""
        queued = self._groups.get(group)
        if queued is None or self.closed:
            queued = _Queued(group, len(self._outbox))
            self._enqueue(queued, timeout)  # raises when the connection is lost
            self._groups[group] = queued
            self._outbox.append(b"")  # its place, filled as the turn's commands are written
        waiter = self._loop.create_future()
        queued.members.append(member)
        queued.waiters.append(waiter)
        return waiter

    def _enqueue(self, waiter: _Answerable, timeout: float) -> None:
        """``waiter`` in line for the next command's reply, behind those already sent."""
        if self.closed or self._transport is None:
            raise RedisConnectionError("Connection to Redis lost")
        now = self._loop.time()
        if not self._pending:
            self._heard = now  # silence only counts while something waits
        self._pending.append(waiter)
        deadline = now + timeout
        self._deadlines.append(deadline)
        if self._timer is None or deadline < self._timer.when():
            self._arm(deadline)
        if not self._outbox:
            self._loop.call_soon(self._flush)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _flush(self) -> None:
        """Write every command queued during this turn of the event loop at once: on a busy
        gateway several requests reserve in the same turn, and each socket write costs more
        than the command itself."""
        commands, self._outbox = self._outbox, []
        if self._groups:
            groups, self._groups = self._groups, {}
            for group, queued in groups.items():
                try:
                    commands[queued.place] = group.command(queued.members)
                except Exception as exc:  # a reply would be missing: the line is broken
                    queued.set_exception(exc)
                    self.close()
                    return
        if self._transport is not None and not self.closed:
            self._transport.write(b"".join(commands))

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Fail each command past its deadline (only those); close the connection when it
        has gone silent; then wait for the next deadline of a command still waiting."""
        self._timer = None
        now = self._loop.time()
        expired = False
        upcoming: float | None = None
        for waiter, deadline in zip(self._pending, self._deadlines, strict=True):
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(RedisTimeoutError("Timed out waiting for Redis"))
                expired = True
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        if expired and now - self._heard >= self._dead_after_s:
            self.close()
        if upcoming is not None and not self.closed:
            self._arm(upcoming)


def pack(args: Sequence[str | bytes | int]) -> bytes:
    """One command in RESP, as Redis reads it."""
    whole = args if type(args) is tuple else tuple(args)
    packed: bytes = hiredis.pack_command(cast(Any, whole))  # its stub declares a 1-tuple
    return packed


def _reply_error(error: ResponseError) -> ResponseError:
    message = str(error)
    return NoScriptError(message) if message.startswith("NOSCRIPT") else error


class _Answerable(Protocol):
    """What waits for one command's reply: a future, or a group's members (``_Queued``)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


class _Queued(Generic[Item]):
    """A group's members in one turn: where its command goes, and who waits for what. It
    waits in the connection's line as a future would, so its reply reaches the members in
    the turn it arrives."""

    __slots__ = ("_answered", "group", "members", "place", "waiters")

    def __init__(self, group: CommandGroup[Item], place: int) -> None:
        self.group = group
        self.place = place
        self.members: list[Item] = []
        self.waiters: list[asyncio.Future[Any]] = []
        self._answered = False

    def done(self) -> bool:
        return self._answered

    def set_result(self, result: Any) -> None:
        waiters = self.waiters
        try:
            replies = self.group.replies(result, len(waiters))
        except Exception as exc:  # not the reply the group's command promises
            self.set_exception(ResponseError(f"unexpected reply to a group: {exc!r}"))
            return
        if len(replies) != len(waiters):
            self.set_exception(ResponseError(f"{len(replies)} replies for {len(waiters)}"))
            return
        self._answered = True
        for waiter, one in zip(waiters, replies, strict=True):
            if not waiter.done():
                waiter.set_result(one)

    def set_exception(self, exception: BaseException) -> None:
        """Each member fails; an error reply to several is ``GroupFailed``."""
        self._answered = True
        if len(self.waiters) > 1 and isinstance(exception, ResponseError):
            exception = GroupFailed(exception)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(exception)
