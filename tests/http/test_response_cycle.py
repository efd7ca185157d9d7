"""LeanCycle writes what uvicorn's own cycle writes, and refuses what it refuses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.http.response_cycle import LeanCycle


class Wire:
    """An asyncio transport that keeps what is written (uvicorn's side of the socket)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle(
    kind: type[RequestResponseCycle], method: str, keep_alive: bool, dated: bool = True
) -> Any:
    wire = Wire()
    completed: list[bool] = []
    made = kind(
        scope={"type": "http", "method": method, "path": "/", "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=wire,  # type: ignore[arg-type]
        flow=FlowControl(wire),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[(b"date", b"Sun, 06 Dec 2026 10:00:00 GMT")] if dated else [],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: completed.append(True),
    )
    return made, wire, completed


async def outcome(
    kind: type[RequestResponseCycle],
    method: str,
    keep_alive: bool,
    messages: list[Any],
    dated: bool = True,
) -> tuple[list[bytes], bool, bool, str | None]:
    made, wire, completed = cycle(kind, method, keep_alive, dated)
    error = None
    try:
        for message in messages:
            await made.send(message)
    except RuntimeError as exc:
        error = str(exc)
    return wire.written, wire.closed, bool(completed), error


def start(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


JSON = [(b"x-gateway-model", b"m"), (b"Content-Length", b"5"), (b"content-type", b"a/json")]
CASES = {
    "json": ("POST", True, [start(200, JSON), body(b"hello")]),
    "json_in_pieces": ("POST", True, [start(200, JSON), body(b"he", True), body(b"llo")]),
    "no_keep_alive": ("POST", False, [start(200, JSON), body(b"hello")]),
    "connection_close": (
        "POST",
        True,
        [start(200, [*JSON, (b"connection", b"Keep-Alive, Close")]), body(b"hello")],
    ),
    "chunked_stream": ("POST", True, [start(200, []), body(b"data: 1\n\n", True), body(b"")]),
    "chunked_ends_with_data": ("POST", False, [start(200, []), body(b"", True), body(b"end")]),
    "transfer_encoding": (
        "POST",
        True,
        [start(200, [(b"transfer-encoding", b"chunked")]), body(b"x", True), body(b"")],
    ),
    "no_content": ("POST", True, [start(204, []), body(b"")]),
    "head": ("HEAD", True, [start(200, JSON), body(b"")]),
    "too_long": ("POST", True, [start(200, JSON), body(b"hello!")]),
    "too_short": ("POST", True, [start(200, JSON), body(b"hell")]),
    "bad_name": ("POST", True, [start(200, [(b"x y", b"1")])]),
    "bad_value": ("POST", True, [start(200, [(b"x-y", b"1\r\nset-cookie: a")])]),
    "tab_in_value": ("POST", True, [start(200, [(b"x-y", b"a\tb"), *JSON]), body(b"hello")]),
    "body_first": ("POST", True, [body(b"hello")]),
    "after_the_end": ("POST", True, [start(200, JSON), body(b"hello"), body(b"")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_bytes_and_errors_as_uvicorn(case: str) -> None:
    method, keep_alive, messages = CASES[case]
    ours = asyncio.run(outcome(LeanCycle, method, keep_alive, messages))
    theirs = asyncio.run(outcome(RequestResponseCycle, method, keep_alive, messages))
    assert b"".join(ours[0]) == b"".join(theirs[0])
    assert ours[1:] == theirs[1:]


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_head_without_any_field_is_uvicorns_too(keep_alive: bool) -> None:
    messages = [start(204, []), body(b"")]
    ours = asyncio.run(outcome(LeanCycle, "POST", keep_alive, messages, dated=False))
    theirs = asyncio.run(outcome(RequestResponseCycle, "POST", keep_alive, messages, dated=False))
    assert ours == theirs
