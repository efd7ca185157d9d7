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
its body in one write. uvicorn's parser callbacks are its own, leaner versions: the scope built
in one dict once the header is complete (its target read once per target, ``request_target``),
the cycle started without keyword arguments or calls up, and uvicorn's proxy headers read here
(``forwarded``), not by a middleware.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.errors import InvalidRequest, RequestTimeout
from gateway.http.asgi import bound_call
from gateway.http.client_gone import client_left
from gateway.http.cycle import GatewayCycle
from gateway.http.forwarded import forward, unwrapped
from gateway.http.request_target import read_target
from gateway.http.stream_cut import STATE_KEY, OpenRelays
from gateway.proxy.incoming import BODY_TIMED_OUT


@dataclass(frozen=True)
class ReadDeadlines:
    header_s: float = 10.0
    body_s: float = 120.0  # a 32 MB upload needs ~270 KB/s
    body_idle_s: float = 10.0


# The header names ``on_header`` looks at
_NOTED = frozenset((b"expect", b"x-forwarded-proto", b"x-forwarded-for"))
_OWS = b" \t"

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


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines."""

    cycle: GatewayCycle  # the only kind this protocol builds (None before the first request)

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
        self.upgrading = False  # the request being read is handed to the websocket protocol
        # uvicorn's proxy headers middleware, if on, done here (``forwarded``)
        app, self.forwarding = unwrapped(self.app)
        self.app = bound_call(app)
        self.trusted = False  # the client's forwarded headers are read
        self.forwarded = False  # the request has one
        self.reset_contextvars = bool(getattr(config, "reset_contextvars", False))
        self.task_done = self.tasks.discard  # (bound once, not per request)

    # -- connection and parser callbacks: phases change, the timer moves lazily --------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.forwarding is not None:
            self.trusted = (self.client[0] if self.client else None) in self.forwarding
        self.last_read = self.loop.time()
        self.phase, self.deadline = WAITING, self.last_read + self.deadlines.header_s
        self._arm(self.deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's (it marks an unfinished answer's cycle disconnected), then that cycle's
        ``client_left``: a relay watching it (``http.client_gone``) learns it at once."""
        self._disarm()
        self.phase = IDLE
        super().connection_lost(exc)
        cycle = self.cycle
        if cycle is not None and cycle.disconnected:
            client_left(cycle)
        self.idle_until = 0.0
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the read's time noted and the keep-alive timeout stopped inline."""
        self.last_read = self.loop.time()
        self.idle_until = 0.0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if self.phase != IDLE and self.timer is None:
            self._arm(self._due())

    def on_message_begin(self) -> None:
        """uvicorn's, but the scope is built whole once the header is complete."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.forwarded = False
        if self.phase == IDLE:  # a later request: its own header deadline
            self.deadline = self.last_read + self.deadlines.header_s
        self.phase = HEADER

    def on_header(self, name: bytes, value: bytes) -> None:
        """uvicorn's, noting a proxy's headers (read only when present)."""
        if not name.islower():  # (most clients send them lower-case: no copy made)
            name = name.lower()
        if value and value[-1] in _OWS:  # llhttp keeps trailing whitespace, not of the value
            value = value.rstrip(_OWS)
        if name in _NOTED:
            if name == b"expect":
                if value.lower() == b"100-continue":
                    self.expect_100_continue = True
            else:
                self.forwarded = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """uvicorn's: the same scope (its keys in the same order) built in one dict, and the
        request's ``GatewayCycle`` started (or queued behind the one answering)."""
        parser = self.parser
        http_version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        self.upgrading = parser.should_upgrade() and self._should_upgrade()
        if self.upgrading:  # uvicorn's scope as it stands when it hands over
            self.scope = {  # type: ignore[typeddict-item]
                "type": "http",
                "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
                "http_version": http_version,
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,  # type: ignore[typeddict-item]
                "root_path": self.root_path,
                "headers": self.headers,
                "state": self.app_state.copy(),
                "method": method,
            }
            return
        path, raw_path, query_string = read_target(self.url)
        root_path = self.root_path
        scope = self.scope = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
            "method": method,
            "path": root_path + path if root_path else path,
            "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
            "query_string": query_string,
        }
        if self.forwarded and self.trusted:
            forward(scope, self.forwarding)  # type: ignore[arg-type]
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        existing = self.cycle
        cycle = self.cycle = GatewayCycle(
            scope,
            self.transport,
            self.flow,
            self.logger,
            self.access_logger,
            self.access_log,
            self.server_state.default_headers,
            asyncio.Event(),
            self.expect_100_continue,
            http_version != "1.0" and parser.should_keep_alive(),
            self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, app)
        else:  # pipelined: it waits for the answer before it
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))
        self.phase, self.deadline = BODY, self.last_read + self.deadlines.body_s

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if self.upgrading or cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        self.phase = IDLE
        cycle = self.cycle
        if self.upgrading or cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self.reset_contextvars:
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.task_done)
        self.tasks.add(task)

    def on_response_complete(self) -> None:
        """uvicorn's: the next pipelined request starts, or the keep-alive timeout runs (from
        now, on the connection's idle timer)."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.idle_until = 0.0
        if self.flow.read_paused:  # (``resume_reading``'s own test: no call when not paused)
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
            client_left(cycle)  # the app reads a disconnect; its own answer is dropped
        if phase == HEADER or (phase == BODY and busy):
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()
