"""SSE relay: forward upstream events as they arrive, scanning only as much as usage needs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.errors import (
    GatewayError,
    ServerShuttingDown,
    UpstreamError,
    UpstreamTimeout,
    sse_error_event,
)
from gateway.providers.sse import EventSplitter, EventTooLarge
from gateway.providers.transport import network_error_kind
from gateway.wire.transport import BodyReader, RelaySink

DONE = b"data: [DONE]"
# A run of events ending with this probably ends the stream: it is left to the relay's reader,
# which can send it with the body's end (``http.relay_response``)
LAST_EVENT = DONE + b"\n\n"
_LAST_EVENT_SIZE = -len(LAST_EVENT)
_BRACE, _E, _CLOSING_BRACE = ord("{"), ord("e"), ord("}")
# Failures of an upstream after its first byte (``gateway_upstream_errors_total`` error types).
CUT, IDLE_TIMEOUT = "stream_cut", "stream_idle_timeout"
ERROR = b'"error"'  # a chunk holding this may carry the upstream's in-band error event
USAGE = b'"usage"'
_DATA_OBJECT = b"data: {"  # an event's usual start: ``"error"`` next for an error event
_MARKERS = (USAGE, DONE, ERROR)  # what an event the relay must look into holds
# complete events → (the events edited, whether the edit was made)
FirstEventEdit = Callable[[bytes], tuple[bytes, bool]]


def relayed(
    sink: RelaySink, first: bytes, rest: AsyncIterator[bytes], response: httpx.Response
) -> AsyncIterator[bytes]:
    """The body (``first``, then ``rest``) passed through ``sink``: over the gateway's own
    transport by the connection as it parses it, over any other body (a translated stream, a
    test's mock) by an async generator calling the same methods."""
    if isinstance(rest, BodyReader):
        return rest.through(sink, first)
    return _relayed(sink, first, rest, response)


async def _relayed(
    sink: RelaySink, first: bytes, rest: AsyncIterator[bytes], response: httpx.Response
) -> AsyncIterator[bytes]:
    finished = False
    try:
        try:
            if out := sink.feed(first):
                yield out
            async for chunk in rest:
                if out := sink.feed(chunk):
                    yield out
            last = sink.end()
        except (httpx.TransportError, EventTooLarge) as exc:  # timeouts are transport errors
            last = sink.fail(exc)
        if last:
            yield last
        finished = True
    finally:
        try:
            await response.aclose()
        finally:
            sink.closed(finished)


@dataclass
class StreamResult:
    """What the relay saw; read by metering and metrics once the stream ends."""

    usage: dict[str, Any] | None = None
    events: int = 0  # data events relayed, excluding [DONE] and dropped usage-only chunks
    completed: bool = False  # the upstream sent [DONE]
    error: GatewayError | None = None
    client_gone: bool = False
    first_chunk_at: float = 0.0
    last_chunk_at: float = 0.0
    bytes_out: int = 0
    upstream_error: bool = False  # the upstream sent an in-band error event
    upstream_cut: str | None = None  # it failed after the first byte: CUT or IDLE_TIMEOUT
    server_cut: bool = False  # the gateway ended it: its shutdown grace period was over


class SSERelay:
    """Yields upstream SSE bytes to the client event-aligned.

    Fast path: a run of complete events with no ``"usage"`` and no ``[DONE]`` is forwarded as is.
    Slow path (rare): split events, read usage, drop the usage-only chunk if the client did not
    ask for usage. An upstream that stops without ``[DONE]`` gets an in-band error appended.
    Each chunk is scanned once, so an event that arrives in many pieces costs linear time; an
    event longer than ``max_event_bytes`` ends the stream with an in-band error.

    Over the gateway's own transport the relay is the connection's sink (``wire.Sink``): each
    chunk is scanned where it is parsed and the reader awaits the connection's future, with no
    coroutine of ours between, and once the response is under way (``push_to``) the events
    are sent on from there, with no task woken; over any other body (a translated stream, a
    test's mock) an async generator does the same with the same four methods.
    """

    def __init__(
        self,
        first_chunk: bytes,
        rest: AsyncIterator[bytes],
        response: httpx.Response,
        *,
        client_wants_usage: bool,
        on_end: Callable[[StreamResult], None],
        max_event_bytes: int = 4 * 1024 * 1024,
        first_event_edit: FirstEventEdit | None = None,
    ) -> None:
        self._first = first_chunk
        # adds to the first data event (the source indicator); dropped once it did
        self._first_event_edit = first_event_edit
        self._rest: AsyncIterator[bytes] | None = rest  # dropped once iterated
        self._response = response
        self._wants_usage = client_wants_usage
        self._on_end = on_end
        self._max_event = max_event_bytes
        self._events = EventSplitter(max_event_bytes)
        # nothing held of an earlier chunk and no edit pending: a chunk may take ``feed``'s
        # shortcut
        self._whole = first_event_edit is None
        self._push: Callable[[bytes], bool] | None = None
        self.result = StreamResult()

    def __aiter__(self) -> AsyncIterator[bytes]:
        self.result.first_chunk_at = time.perf_counter()
        rest, self._rest = self._rest, None  # the connection holds this relay as its sink
        if rest is None:
            raise RuntimeError("an SSE relay is iterated once")
        return relayed(self, self._first, rest, self._response)

    def closed(self, finished: bool) -> None:
        """The relay is over and the upstream answer closed; ``finished``: it was read to its
        end (else the client went away, or the server cut it: ``server_cut`` said so first)."""
        result = self.result
        result.last_chunk_at = time.perf_counter()
        if not finished:
            result.client_gone = not result.server_cut
        self._on_end(result)

    def server_cut(self) -> bytes:
        """The server is ending this stream (shutdown): recorded as its cut, not the client's
        leaving; the bytes that end it in-band (``http/stream_cut``)."""
        self.result.server_cut = True
        self.result.error = ServerShuttingDown(
            "The gateway is shutting down and ended this stream before it was complete; "
            "retry the request."
        )
        return sse_error_event(self.result.error)

    def push_to(self, push: Callable[[bytes], bool] | None) -> None:
        """``wire.RelaySink.push_to``: events are offered to ``push`` as ``feed`` makes them,
        but for a run that probably ends the stream (``LAST_EVENT``), left to the reader to
        send with the body's end."""
        self._push = push

    def feed(self, chunk: bytes) -> bytes:
        """The complete events of ``chunk`` (and what was held of earlier ones), as relayed;
        b"" when ``push`` took them."""
        push = self._push
        if self._whole:
            # The usual chunk: one event of one line, ``data: {...}`` with no usage, relayed as
            # it is (as the general way below would, after more scans of it: each C call costs
            # hundreds of instructions).
            line, _, rest = chunk.partition(b"\n")
            if (
                rest == b"\n"
                and len(line) > 8
                and line[6] == _BRACE  # ``data: {``: not [DONE]
                and line[8] != _E  # not ``data: {"error"``
                and line[-1] == _CLOSING_BRACE  # nor ending as [DONE] does (``offered``)
                and not line.partition(b"\r")[1]
            ):
                _, usage, after = line.partition(USAGE)
                if not usage or _null_usage(after):  # a call only for a line naming usage
                    result = self.result
                    result.events += 1
                    result.bytes_out += len(chunk)
                    return b"" if push is not None and push(chunk) else chunk
        complete = self._feed(chunk)
        self._whole = self._first_event_edit is None and self._events.clean
        return offered(push, complete)

    def _feed(self, chunk: bytes) -> bytes:
        complete = self._events.feed(chunk)
        if not complete:
            return b""
        if self._first_event_edit is not None:
            complete, edited = self._first_event_edit(complete)
            if edited:
                self._first_event_edit = None
        # partition, not ``in`` nor find: bytes' ``in`` first tries the operand as an int and
        # formats the TypeError it gets, find parses its optional arguments from a tuple (a
        # thousand instructions, or half that, on every chunk)
        if (
            complete.partition(USAGE)[1]
            or complete.partition(DONE)[1]
            or complete.partition(ERROR)[1]
        ):
            return self._scan_events(complete)
        result = self.result
        result.events += complete.count(b"\n\n")
        result.bytes_out += len(complete)
        return complete

    def _scan_events(self, complete: bytes) -> bytes:
        result = self.result
        start = events = 0
        whole = complete[:1] != b"\n" and not complete.partition(b"\n\n\n")[1]
        if whole:
            # no blank run: the events before the first that names usage, [DONE] or an
            # error go out as they are, each counted (what the loop below makes of them)
            first = len(complete)
            for marker in _MARKERS:
                at = complete.find(marker)
                if 0 <= at < first:
                    first = at
            start = complete.rfind(b"\n\n", 0, first) + 2
            events = complete.count(b"\n\n", 0, start) if start > 1 else 0
            start = start if start > 1 else 0
        kept = []
        dropped = False
        for raw in (complete[start:] if start else complete).split(b"\n\n"):
            event = raw.lstrip(b"\n")
            if not event:
                continue
            if event[:7] == _DATA_OBJECT:
                # the usual event (a slice compared: startswith parses its arguments on every
                # call): ``_is_error_event`` is whether ``"error"`` follows, and ``_usage_in``
                # is asked only of an event that names usage (no call per event)
                if event[7:14] == ERROR:
                    result.upstream_error = True
                elif event.partition(USAGE)[1] and (found := _usage_in(event)) is not None:
                    result.usage, usage_only = found
                    if usage_only and not self._wants_usage:
                        dropped = True
                        continue
            elif event.startswith(DONE):
                result.completed = True
                kept.append(event)
                continue
            elif _is_error_event(event):
                result.upstream_error = True
            elif (found := _usage_in(event)) is not None:
                result.usage, usage_only = found
                if usage_only and not self._wants_usage:
                    dropped = True
                    continue
            events += 1
            kept.append(event)
        result.events += events
        if whole and not dropped:  # every event kept as it came: the bytes themselves
            out = complete
        else:
            out = b"\n\n".join(kept) + b"\n\n" if kept else b""
            if start:
                out = complete[:start] + out
        result.bytes_out += len(out)
        return out

    def end(self) -> bytes:
        """The last bytes once the upstream's body ended: an in-band error if it had not."""
        result = self.result
        tail = self._feed(b"\n\n") if self._events.pending() else b""
        if result.completed:
            return tail
        if result.upstream_error:  # the client already has the upstream's own error event
            result.error = UpstreamError("The upstream reported an error mid-stream.")
            return tail
        result.error = UpstreamError("The upstream stream ended before it was complete.")
        result.upstream_cut = CUT
        return tail + sse_error_event(result.error)

    def fail(self, error: Exception) -> bytes:
        """The in-band error that ends the relay after ``error``; others are passed on."""
        result = self.result
        if isinstance(error, EventTooLarge):
            result.error = UpstreamError(
                f"An upstream stream event exceeded the gateway's {self._max_event} byte limit."
            )
            return sse_error_event(result.error)
        if not isinstance(error, httpx.TransportError):  # httpx's timeouts are these too
            raise error
        result.upstream_cut = cut_kind(error)
        if result.upstream_cut == IDLE_TIMEOUT:
            failure: GatewayError = UpstreamTimeout("The upstream stream stalled (idle timeout).")
        else:
            failure = UpstreamError("The upstream connection was lost mid-stream.")
        result.error = failure
        return sse_error_event(failure)


def offered(push: Callable[[bytes], bool] | None, events: bytes) -> bytes:
    """``events`` as a relay's ``feed`` gives them once offered to ``push``: b"" when it sent
    them on; not offered when they probably end the stream (``LAST_EVENT``)."""
    if push is not None and events and events[_LAST_EVENT_SIZE:] != LAST_EVENT and push(events):
        return b""
    return events


def cut_kind(exc: BaseException) -> str:
    """What an error after the first byte means: the upstream went quiet, or it cut."""
    if isinstance(exc, TimeoutError):
        return IDLE_TIMEOUT
    if isinstance(exc, httpx.HTTPError) and network_error_kind(exc) == "timeout":
        return IDLE_TIMEOUT
    return CUT


def _usage_in(event: bytes) -> tuple[dict[str, Any], bool] | None:
    """The event's usage and whether it is a usage-only chunk; None when it has no usage."""
    at = event.find(USAGE)
    if at < 0 or event[at + 7 : at + 16].lstrip(b" :").startswith(b"null"):
        return None
    try:
        document = orjson.loads(_payload(event))
    except orjson.JSONDecodeError:
        return None
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    return usage, not document.get("choices")


def _null_usage(after: bytes) -> bool:
    """Whether what follows an event line's ``"usage"`` says it holds no usage: a ``null``
    (as OpenAI's streams send on every chunk once ``include_usage`` is asked for), and no
    second ``"usage"``."""
    return after[:9].lstrip(b" :").startswith(b"null") and not after.partition(USAGE)[1]


def _is_error_event(event: bytes) -> bool:
    return event.startswith(b"data:") and event[5:].lstrip(b" ").startswith(b'{"error"')


def _payload(event: bytes) -> bytes:
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines)
