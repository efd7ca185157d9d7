"""Read deadlines for client connections: a request's header and body must arrive in time.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``); a connection that
sends nothing, a header a byte at a time or half a body is held forever (slowloris). This
protocol keeps one lazily moved timer per connection:

* header: from the connection's start (or the first byte of a later request) to the end of its
  header, at most ``header_s``; on expiry the connection is closed (with a 408 if the request
  had begun);
* body: from the end of the header, at most ``body_s`` in all and ``body_idle_s`` between
  reads; on expiry the client gets a 408 (OpenAI-shaped) and the connection is closed, and the
  app sees the body end as a disconnect flagged ``BODY_TIMED_OUT`` in its scope (so it records
  a 408, not a 500 or a client disconnect).

Time the gateway itself holds a connection's reads paused (pipelined requests waiting their
turn, a full body buffer) never counts against the client.

uvicorn's own idle bound between requests (``timeout_keep_alive``) is kept, with one lazily
moved timer per connection too instead of a timer made after every answer and cancelled by the
next request's first bytes.

Its request cycles are ``GatewayCycle``s (``gateway.http.cycle``): an answer's head leaves with
its body in one write.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from gateway.errors import InvalidRequest, RequestTimeout
from gateway.http.cycle import GatewayCycle
from gateway.http.stream_cut import STATE_KEY, OpenRelays
from gateway.proxy.incoming import BODY_TIMED_OUT


@dataclass(frozen=True)
class ReadDeadlines:
    header_s: float = 10.0
    body_s: float = 120.0  # a 32 MB upload needs ~270 KB/s
    body_idle_s: float = 10.0


# Phases of a connection (plain ints: compared on every read)
IDLE = 0  # between requests: uvicorn's keep-alive timeout applies
WAITING = 1  # a new connection, nothing received yet
HEADER = 2  # a request has begun, its header is incomplete
BODY = 3  # the header is complete, the body is not


def _timeout_response() -> bytes:
    body = orjson.dumps(RequestTimeout("The request was not received in time.").body())
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


TIMEOUT_RESPONSE = _timeout_response()


def _bad_request_response(msg: str) -> bytes:
    body = orjson.dumps(InvalidRequest(f"{msg} The request could not be parsed.").body())
    head = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


class GuardedConfig(uvicorn.Config):
    """uvicorn's config, serving with ``GuardedHttpToolsProtocol`` and these deadlines."""

    def __init__(
        self, app: Any, *, read_deadlines: ReadDeadlines | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.read_deadlines = read_deadlines or ReadDeadlines()


def _building_ours(method: Callable[..., Any]) -> Callable[..., Any]:
    """uvicorn's ``method`` run with its module's name ``RequestResponseCycle`` meaning
    ``GatewayCycle``: the cycle it builds is ours from the start (a class swapped on the built
    object instead turns its attributes into a dict, slower for every read that follows)."""
    names = dict(method.__globals__, RequestResponseCycle=GatewayCycle)
    code, defaults, closure = method.__code__, method.__defaults__, method.__closure__
    return types.FunctionType(code, names, method.__name__, defaults, closure)


_headers_complete = _building_ours(HttpToolsProtocol.on_headers_complete)
# uvicorn's callbacks that run on every request, called as functions (no ``super()`` object)
_data_received = HttpToolsProtocol.data_received
_message_begin = HttpToolsProtocol.on_message_begin
_message_complete = HttpToolsProtocol.on_message_complete


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadlines: ReadDeadlines = getattr(config, "read_deadlines", None) or ReadDeadlines()
        self.phase = IDLE
        self.deadline = 0.0  # the header's end, or the body's total end
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # uvicorn's keep-alive timeout: when an idle connection is closed (0.0: not idle)
        self.idle_until = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_timer_at = 0.0
        # shared by the server's connections, and seen by its requests in scope["state"]
        self.open_relays: OpenRelays = app_state.setdefault(STATE_KEY, OpenRelays())

    # -- connection and parser callbacks: phases change, the timer moves lazily --------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.last_read = self.loop.time()
        self.phase, self.deadline = WAITING, self.last_read + self.deadlines.header_s
        self._arm(self.deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.phase = IDLE
        super().connection_lost(exc)
        self.idle_until = 0.0
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        _data_received(self, data)
        if self.phase != IDLE and self.timer is None:
            self._arm(self._due())

    def on_message_begin(self) -> None:
        _message_begin(self)
        if self.phase == IDLE:  # a later request: its own header deadline
            self.deadline = self.last_read + self.deadlines.header_s
        self.phase = HEADER

    def on_headers_complete(self) -> None:
        _headers_complete(self)
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and type(cycle) is RequestResponseCycle:
            # a uvicorn whose method no longer builds its cycle by that name: the object it
            # built (its task not yet run) becomes ours
            cycle.__class__ = GatewayCycle
        self.phase, self.deadline = BODY, self.last_read + self.deadlines.body_s

    def on_message_complete(self) -> None:
        _message_complete(self)
        self.phase = IDLE

    def on_response_complete(self) -> None:
        """uvicorn's: the next pipelined request starts, or the keep-alive timeout runs (from
        now, on the connection's idle timer)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.idle_until = 0.0
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        until = self.idle_until = self.loop.time() + self.timeout_keep_alive
        if self.idle_timer is None or self.idle_timer_at > until:
            self._arm_idle(until)

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn's: bytes came (or the answer ended), the keep-alive timeout stops."""
        self.idle_until = 0.0

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused (bad framing, an invalid header) gets an OpenAI-shaped
        400 like every other error, not uvicorn's plain-text one."""
        self._disarm()
        self.transport.write(_bad_request_response(msg))
        self.transport.close()

    def shutdown(self) -> None:
        """The server is shutting down: streams still open near the grace period's end are
        ended in-band (``stream_cut``) rather than cancelled by uvicorn."""
        self.open_relays.schedule(self.loop, self.config.timeout_graceful_shutdown)
        super().shutdown()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self.phase = IDLE
        super().handle_websocket_upgrade()

    # -- the timer --------------------------------------------------------------------------

    def _due(self) -> float:
        if self.phase == BODY:
            return min(self.deadline, self.last_read + self.deadlines.body_idle_s)
        return self.deadline

    def _arm(self, when: float) -> None:
        self.timer = self.loop.call_at(when, self._on_timer)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm_idle(self, when: float) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.idle_timer_at = when
        self.idle_timer = self.loop.call_at(when, self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        """The keep-alive timeout, if the connection is still idle since it began."""
        self.idle_timer = None
        until = self.idle_until
        if not until:
            return
        now = self.loop.time()
        if now < until:  # idle again since: wait for that (a millisecond at least: the
            self._arm_idle(max(until, now + 0.001))  # loop's clock may lag the timer's)
            return
        self.idle_until = 0.0
        self.timeout_keep_alive_handler()

    def _on_timer(self) -> None:
        self.timer = None
        if self.phase == IDLE or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the gateway holds the reads: give the client its time back
            self.last_read = now
            self.deadline = max(self.deadline, now + self.deadlines.body_idle_s)
        due = self._due()
        if now < due:
            self._arm(due)
        else:
            self._expire()

    def _expire(self) -> None:
        """Past a deadline: answer 408 unless an answer is under way, and close."""
        cycle, phase = self.cycle, self.phase  # cycle: the latest request's, None before one
        self.phase = IDLE
        busy = cycle is not None and not cycle.response_complete
        if busy and (phase == HEADER or cycle.response_started):
            # an answer (to this or an earlier request) is under way: never cut it short
            cycle.keep_alive = False
            return
        if phase == BODY and busy:
            cycle.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]
            cycle.disconnected = True  # the app reads a disconnect; its own answer is dropped
            cycle.message_event.set()
        if phase == HEADER or (phase == BODY and busy):
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()
