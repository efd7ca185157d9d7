"""The shared pipelined Redis connection against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.redis.pipelined import PipelinedConnection, RedisEndpoint
from tests.metering.helpers import RedisServer, command, run
from tests.support import free_port

# Busy-waits inside Redis for ARGV[1] milliseconds (DEBUG SLEEP is disabled by default).
STALL = """
local stop = tonumber(ARGV[1]) / 1000
local t = redis.call('TIME'); local start = t[1] + t[2] / 1e6
repeat t = redis.call('TIME') until t[1] + t[2] / 1e6 - start >= stop
return 1
"""


def clients(server: RedisServer) -> int:
    info = command(server.port, "INFO", "clients").decode()
    return int(info.split("connected_clients:")[1].split("\r\n")[0])


def connect(server: RedisServer, **options: object) -> PipelinedConnection:
    return PipelinedConnection(RedisEndpoint("127.0.0.1", server.port, **options))  # type: ignore[arg-type]


def test_concurrent_commands_each_get_their_own_reply(redis_server: RedisServer) -> None:
    redis_server.flushall()

    async def scenario() -> None:
        redis = connect(redis_server)
        await asyncio.gather(*(redis.execute("SET", f"k{i}", i) for i in range(300)))
        values = await asyncio.gather(*(redis.execute("GET", f"k{i}") for i in range(300)))
        assert values == [str(i).encode() for i in range(300)]
        clients = await redis.execute("CLIENT", "LIST")
        await redis.aclose()
        assert clients.count(b"cmd=client") == 1  # all of it over one connection

    run(scenario())


def test_error_replies_raise_and_leave_the_connection_usable(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        redis = connect(redis_server)
        with pytest.raises(NoScriptError):
            await redis.execute("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError, match="wrong number of arguments"):
            await redis.execute("GET")
        assert await redis.execute("PING") == b"PONG"
        await redis.aclose()

    run(scenario())


def test_a_killed_connection_is_replaced_on_the_next_command(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        redis = connect(redis_server)
        first = await redis.execute("CLIENT", "ID")
        command(redis_server.port, "CLIENT", "KILL", "ID", str(first))
        await asyncio.sleep(0.05)
        assert await redis.execute("CLIENT", "ID") != first
        await redis.aclose()

    run(scenario())


def test_commands_in_flight_fail_when_the_connection_drops() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        redis = PipelinedConnection(RedisEndpoint("127.0.0.1", port))
        results = await asyncio.gather(
            *(redis.execute("PING") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(result, RedisConnectionError) for result in results)
        server.close()

    run(scenario())


def test_a_late_reply_fails_only_its_own_command(redis_server: RedisServer) -> None:
    """Issue 10 #6: a timed-out command used to close the connection, failing the commands
    behind it although they ran (a settle retried then counted twice)."""
    redis_server.flushall()

    async def scenario() -> None:
        redis = connect(redis_server, command_timeout_s=1.0)
        first = await redis.execute("CLIENT", "ID")
        stalled = asyncio.ensure_future(redis.execute("EVAL", STALL, 0, 1200))
        await asyncio.sleep(0.5)
        behind = asyncio.ensure_future(redis.execute("INCR", "ran"))
        with pytest.raises(RedisTimeoutError):
            await stalled
        assert await behind == 1  # it ran, and its caller knows
        assert await redis.execute("CLIENT", "ID") == first  # same connection
        await redis.aclose()

    run(scenario())


class SilentServer:
    """Accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()


def test_waiters_share_one_connect_attempt() -> None:
    """Issue 10 #6: each waiter used to retry the connect in turn (the k-th failed after k
    connect timeouts); now one attempt is made and all of them share its failure."""

    async def scenario() -> None:
        silent = SilentServer()
        async with silent as port:
            endpoint = RedisEndpoint("127.0.0.1", port, password="x", connect_timeout_s=0.2)
            redis = PipelinedConnection(endpoint)
            results = await asyncio.gather(
                *(redis.execute("PING") for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert silent.accepted == 1
            await redis.aclose()

    run(scenario())


def test_a_silent_connection_is_replaced() -> None:
    async def scenario() -> None:
        silent = SilentServer()
        async with silent as port:
            redis = PipelinedConnection(RedisEndpoint("127.0.0.1", port, command_timeout_s=0.1))
            with pytest.raises(RedisTimeoutError):
                await redis.execute("PING")  # silent for one timeout: kept
            await asyncio.sleep(0.15)
            with pytest.raises(RedisTimeoutError):
                await redis.execute("PING")  # silent for two: closed
            with pytest.raises(RedisTimeoutError):
                await redis.execute("PING")
            assert silent.accepted == 2
            await redis.aclose()

    run(scenario())


def test_selects_the_database_and_authenticates(redis_server: RedisServer) -> None:
    command(redis_server.port, "ACL", "SETUSER", "meter", "on", ">s3cret", "~*", "+@all")

    async def scenario() -> None:
        redis = connect(redis_server, db=3, username="meter", password="s3cret")
        assert await redis.execute("SET", "in-db-3", 1) == b"OK"
        assert await redis.execute("ACL", "WHOAMI") == b"meter"
        await redis.aclose()
        await asyncio.sleep(0.05)
        before = clients(redis_server)
        wrong = connect(redis_server, username="meter", password="nope")
        with pytest.raises(ResponseError, match="WRONGPASS"):
            await wrong.execute("PING")
        await asyncio.sleep(0.05)
        assert clients(redis_server) == before  # the refused connection was closed
        await wrong.aclose()

    run(scenario())
    assert command(redis_server.port, "EXISTS", "in-db-3") == b":0\r\n"


def test_an_unreachable_server_is_a_connection_error() -> None:
    async def scenario() -> None:
        redis = PipelinedConnection(RedisEndpoint("127.0.0.1", free_port()))
        with pytest.raises(RedisConnectionError):
            await redis.execute("PING")

    run(scenario())
