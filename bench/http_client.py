"""A small asyncio HTTP/1.1 client for what wrk cannot measure.

* ``measure_ttfb``: sequential requests on one keep-alive connection; time from writing the
  request to the first response byte, and checks that each stream completed.
* ``slow_streams``: many concurrent SSE streams (one socket each, read from a reader callback
  so that thousands cost little); every stamped chunk gives a relay delay = the time its bytes
  reached this client's socket (the kernel's receive stamp) - ``"ts"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

TS_FIELD = b'"ts":'
DONE = b"data: [DONE]"
STEADY_SHARE = 0.95
# SO_TIMESTAMPNS (Linux; Python names it only from 3.12 on): each read gets the kernel's stamp
# of its bytes' arrival, CLOCK_REALTIME like time.time(), as a struct timespec
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_READ_SIZE = 65536


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    key: str = ""

    def request(self, body: bytes) -> bytes:
        auth = f"authorization: Bearer {self.key}\r\n" if self.key else ""
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\naccept: text/event-stream\r\n{auth}"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


@dataclass
class TtfbResult:
    ttfb_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    last_error: str = ""


async def measure_ttfb(target: Target, body: bytes, count: int, stream: bool) -> TtfbResult:
    result = TtfbResult()
    request = target.request(body)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        for _ in range(count):
            try:
                await _one_timed(reader, writer, request, stream, result)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                result.errors += 1
                result.last_error = repr(error)
                writer.close()
                reader, writer = await asyncio.open_connection(target.host, target.port)
    finally:
        writer.close()
    result.seconds = time.perf_counter() - started
    return result


async def _one_timed(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    stream: bool,
    result: TtfbResult,
) -> None:
    sent = time.perf_counter()
    writer.write(request)
    first = await reader.readexactly(1)
    first_at = time.perf_counter()
    head = first + await reader.readuntil(b"\r\n\r\n")
    body = await _read_body(reader, head)
    done_at = time.perf_counter()
    status = int(head.split(b" ", 2)[1])
    if status != 200 or (stream and (DONE not in body or b'"error"' in body)):
        raise ValueError(f"bad answer: HTTP {status} {body[:200]!r}")
    result.ttfb_ms.append((first_at - sent) * 1000)
    result.total_ms.append((done_at - sent) * 1000)


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        return await _read_chunked(reader)
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":", 1)[1]))
    raise ValueError("answer without length (no keep-alive)")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


@dataclass
class StreamStats:
    """Shared by every stream of one ``slow_streams`` run."""

    total: int
    # per stamped chunk: when its bytes reached this client's socket (the kernel's receive
    # stamp) minus the upstream's ``ts``: the relay's delay, not this client's own
    delays_ms: list[float] = field(default_factory=list)
    # chunks received while at least STEADY_SHARE of the streams were open: the relay's
    # steady state, without the bursts of thousands of requests starting or ending at once
    steady_delays_ms: list[float] = field(default_factory=list)
    # per read: how long its bytes waited in the socket for this client (its loop's lag,
    # on the CPU it shares with the slow upstream and Redis); not part of ``delays_ms``
    client_lags_ms: list[float] = field(default_factory=list)
    # chunks read together with a later one: the kernel stamps a read with its last bytes'
    # arrival, so their delay is an upper bound (the client lagged a whole chunk gap, or the
    # relay wrote them together; the upstream writes each stream's last two stamped chunks
    # together: one per stream is expected)
    bounded: int = 0
    open_now: int = 0
    peak_open: int = 0
    completed: int = 0
    errors: int = 0
    last_error: str = ""
    finished: int = 0
    all_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def steady(self) -> bool:
        return self.open_now >= STEADY_SHARE * self.total

    def opened(self) -> None:
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)

    def closed(self, was_open: bool, ok: bool, error: str) -> None:
        self.open_now -= was_open
        self.completed += ok
        if not ok:
            self.errors += 1
            self.last_error = error or self.last_error
        self.finished += 1
        if self.finished >= self.total:
            self.all_done.set()


def _arrival(ancillary: list[tuple[int, int, bytes]], now: float) -> float:
    """The kernel's receive stamp of a read (the bytes' arrival in the socket); ``now`` if
    the kernel gave none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds * 1e-9
    return now


class StampedStream:
    """One streamed request on its own socket; records every ``"ts"`` stamp's delay.

    The socket is read with ``recvmsg`` from a reader callback (not a protocol's
    ``data_received``: that has no ancillary data), so each read comes with the kernel's
    stamp of its arrival: the delay measured ends where the relay's work does, however long
    this client, busy with thousands of other sockets, takes to get to it."""

    def __init__(
        self, sock: socket.socket, stats: StreamStats, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._sock = sock
        self._stats = stats
        self._loop = loop
        self._pending = b""
        self._head_seen = False
        self._counted_open = False
        self._done = False
        self._error = ""
        self._closed = False

    def start(self, request: bytes) -> None:
        self._sock.sendall(request)  # a few hundred bytes into an empty socket buffer
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(_READ_SIZE, _ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self.close(repr(error))
            return
        if not data:
            self.close("")
            return
        now = time.time()
        arrived = _arrival(ancillary, now)
        self._stats.client_lags_ms.append((now - arrived) * 1000)
        data = self._pending + data
        if not self._head_seen and not (data := self._strip_head(data)):
            return
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self._pending = data
            return
        complete, self._pending = data[: cut + 2], data[cut + 2 :]
        self._record(complete, arrived)

    def _strip_head(self, data: bytes) -> bytes:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self._pending = data
            return b""
        status = data[: data.find(b"\r\n")]
        self._head_seen = True
        self._pending = b""
        if b" 200 " not in status + b" ":
            self._fail(status.decode(errors="replace"))
            return b""
        self._stats.opened()
        self._counted_open = True
        return data[end + 4 :]

    def _record(self, complete: bytes, arrived: float) -> None:
        # the client shares a core with the slow upstream: the stamp is cut with two finds,
        # not a loop per byte
        stats = self._stats
        at = complete.find(TS_FIELD)
        stats.bounded -= at >= 0  # the read's last chunk arrived at the stamp
        while at >= 0:
            stats.bounded += 1
            start = at + len(TS_FIELD)
            comma, brace = complete.find(b",", start), complete.find(b"}", start)
            end = comma if 0 <= comma < brace or brace < 0 else brace
            delay = (arrived - float(complete[start:end])) * 1000
            stats.delays_ms.append(delay)
            if stats.steady:
                stats.steady_delays_ms.append(delay)
            at = complete.find(TS_FIELD, end)
        # find, not ``in``: bytes' ``in`` first tries the operand as an int and formats the
        # TypeError it gets (a thousand instructions each, on every chunk)
        if (error_at := complete.find(b'"error"')) >= 0:
            self._fail(complete[error_at:][:200].decode(errors="replace"))
        elif complete.find(DONE) >= 0:
            self._done = True
            self.close("")

    def _fail(self, error: str) -> None:
        self._error = error
        self.close("")

    def close(self, error: str) -> None:
        """Stop reading and close the socket; the stream counts as completed if it saw
        [DONE] without an error."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        ok = self._done and not self._error
        self._stats.closed(self._counted_open, ok, self._error or error or "closed before [DONE]")


@dataclass(frozen=True)
class SlowPlan:
    streams: int
    connect_parallel: int = 64  # connections being set up at once while ramping up
    deadline_s: float = 60.0


async def slow_streams(
    target: Target,
    body: bytes,
    plan: SlowPlan,
    on_tick: Callable[[StreamStats], None] | None = None,
) -> StreamStats:
    """Open ``plan.streams`` streams (ramping ``connect_parallel`` at a time), wait for all.

    ``on_tick`` is called every 50 ms with the live stats (e.g. to sample the gateway's RSS).
    """
    stats = StreamStats(total=plan.streams)
    request = target.request(body)
    ticker = asyncio.create_task(_tick(stats, on_tick)) if on_tick else None
    gate = asyncio.Semaphore(plan.connect_parallel)
    streams: list[StampedStream] = []
    opens = [_open(target, request, stats, gate, streams) for _ in range(plan.streams)]
    try:
        await asyncio.gather(*opens)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stats.all_done.wait(), plan.deadline_s)
    finally:
        for stream in streams:
            stream.close("still open at the deadline")
        if ticker is not None:
            ticker.cancel()
    missing = plan.streams - stats.finished
    if missing > 0:
        stats.errors += missing
        stats.last_error = f"{missing} streams still open at the deadline"
    return stats


async def _open(
    target: Target,
    request: bytes,
    stats: StreamStats,
    gate: asyncio.Semaphore,
    streams: list[StampedStream],
) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    async with gate:
        try:
            await loop.sock_connect(sock, (target.host, target.port))
            stream = StampedStream(sock, stats, loop)
            stream.start(request)
        except OSError as error:
            sock.close()
            stats.closed(False, False, repr(error))
            return
    streams.append(stream)


async def _tick(stats: StreamStats, on_tick: Callable[[StreamStats], None]) -> None:
    while True:
        on_tick(stats)
        await asyncio.sleep(0.05)
