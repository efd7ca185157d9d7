"""Property tests of the native HTTP/1.1 client against h11 as the reference parser.

Random response byte streams (length, chunked and close-delimited framing, chunk extensions,
trailers, interim 1xx heads, pipelined extras, oversized heads, odd status lines, odd field
bytes), cut at random places, are served by one raw local server; the client must give what
h11 parses, or refuse with an httpx transport error where h11 refuses, or where it is
documented to be stricter than h11. It must never hang, raise anything else, or reuse a
connection that carried bytes after its response.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import string
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.wire import HeaderLimitExceeded, NativeTransport

MAX_HEADER_BYTES = 2048
MAX_HEADERS = 16
PROBE = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nprobe"
TIMEOUT = 2.0  # a wait this long means the client is stuck: it fails the property


# --- the server ---------------------------------------------------------------------------


@dataclass
class Script:
    """One answer: the pieces written one by one, then close or keep the connection."""

    pieces: list[bytes]
    close: bool
    spoiled: bool = False  # bytes followed the response: no request may come after it


@dataclass
class ScriptedServer:
    answers: deque[Script] = field(default_factory=deque)
    violations: list[str] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        spoiled = False
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if spoiled:
                    self.violations.append("a request came on a connection with extra bytes")
                script = self.answers.popleft()
                for piece in script.pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)  # let the client read each piece on its own
                spoiled = script.spoiled
                if script.close:
                    break
        writer.close()


@dataclass
class Harness:
    loop: asyncio.AbstractEventLoop
    server: ScriptedServer
    tls: ssl.SSLContext = field(default_factory=lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))

    def run(self, script: Script, method: str, probe: bool) -> tuple[Outcome, Outcome | None]:
        self.server.answers.clear()
        self.server.answers.append(script)
        return self.loop.run_until_complete(asyncio.wait_for(self._both(method, probe), 10))

    async def _both(self, method: str, probe: bool) -> tuple[Outcome, Outcome | None]:
        transport = NativeTransport(  # a new pool each time; the TLS context (unused) is shared
            ssl_context=self.tls, max_header_bytes=MAX_HEADER_BYTES, max_headers=MAX_HEADERS
        )
        try:
            first = await native(transport, self.server.port, method)
            second = None
            if probe and first.accepted:
                self.server.answers.append(Script([PROBE], close=False))
                second = await native(transport, self.server.port, "GET")
            return first, second
        finally:
            await transport.aclose()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    server = ScriptedServer()
    listener = loop.run_until_complete(asyncio.start_server(server.serve, "127.0.0.1", 0))
    server.port = listener.sockets[0].getsockname()[1]
    yield Harness(loop, server)
    listener.close()
    loop.run_until_complete(listener.wait_closed())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


# --- the two parsers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int = 0
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    error: str = ""  # the exception's class name when refused

    @property
    def accepted(self) -> bool:
        return not self.error


async def native(transport: NativeTransport, port: int, method: str) -> Outcome:
    timeouts = {"connect": TIMEOUT, "read": TIMEOUT, "write": TIMEOUT, "pool": TIMEOUT}
    url = f"http://127.0.0.1:{port}/"
    request = httpx.Request(method, url, extensions={"timeout": timeouts})
    try:
        response = await transport.handle_async_request(request)
        try:
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        raise AssertionError("the client waited although the server was done") from exc
    except httpx.TransportError as exc:  # anything else is not a clean refusal: it propagates
        return Outcome(error=f"{type(exc).__name__}: {exc}")
    return Outcome(response.status_code, _normal(response.headers.raw), body)


def _normal(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """Names lowercased; so is the value of Transfer-Encoding (h11 does it)."""
    pairs = ((name.lower(), value) for name, value in headers)
    return tuple((n, v.lower() if n == b"transfer-encoding" else v) for n, v in pairs)


@dataclass(frozen=True)
class Reference:
    outcome: Outcome
    complete_before_eof: bool = False  # h11 finished the response without the close
    keep_alive: bool = False
    trailing: bytes = b""  # what h11 left after the response


def h11_parse(data: bytes, method: str) -> Reference:
    early = _h11(data, method, eof=False)
    if early is not None:
        return early
    late = _h11(data, method, eof=True)
    assert late is not None
    return late


def _h11(data: bytes, method: str, eof: bool) -> Reference | None:
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
    connection.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(data)
    if eof:
        connection.receive_data(b"")
    status, headers, body = 0, (), b""
    try:
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return Reference(Outcome(error="incomplete")) if eof else None
            if isinstance(event, h11.Response):
                status, headers = event.status_code, _normal(list(event.headers))
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                keep = connection.their_state is h11.DONE
                trailing = connection.trailing_data[0]
                return Reference(Outcome(status, headers, body), not eof, keep, trailing)
    except h11.RemoteProtocolError as exc:
        return Reference(Outcome(error=f"h11: {exc}"))


# --- generated answers ---------------------------------------------------------------------

TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VISIBLE = bytes(range(0x21, 0x7F))
COMMON = [b"content-type", b"x-request-id", b"server", b"date", b"set-cookie", b"link", b"via"]
names = st.one_of(st.sampled_from(COMMON), st.text(TOKEN, min_size=1, max_size=10).map(str.encode))
plain_values = st.binary(max_size=20).map(lambda raw: bytes(VISIBLE[b % 94] for b in raw))
values = st.one_of(
    plain_values,
    st.tuples(plain_values, st.sampled_from([b" ", b"\t", b"  "]), plain_values).map(b"".join),
    st.tuples(
        plain_values,
        st.binary(min_size=1, max_size=3).map(lambda raw: bytes(0x80 | b for b in raw)),
    ).map(b"".join),
    st.tuples(st.sampled_from([b" ", b"\t", b""]), plain_values, st.sampled_from([b" ", b""])).map(
        b"".join
    ),
)
odd_values = st.tuples(
    plain_values, st.sampled_from([b"\x00", b"\x01", b"\x7f", b"\x0b"]), plain_values
).map(b"".join)


def mostly(usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes], one_in: int) -> Any:
    """``odd`` about once in ``one_in`` draws, so that most answers are valid ones."""
    return st.integers(1, one_in).flatmap(lambda pick: odd if pick == 1 else usual)


fields = st.lists(st.tuples(names, mostly(values, odd_values, 40)), max_size=6)
statuses = mostly(
    st.sampled_from([200, 201, 204, 304, 400, 404, 429, 500, 503]).map(lambda s: b"%d" % s),
    st.one_of(
        st.integers(0, 999).map(lambda s: b"%03d" % s),
        st.sampled_from([b"20", b"2000", b"abc", b""]),
    ),
    8,
)
versions = st.sampled_from([b"HTTP/1.1"] * 16 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTX/1.1"])
reasons = st.one_of(
    st.sampled_from([b" OK", b" ", b"", b" Not Found", b" Weird \t reason"]),
    plain_values.map(lambda value: b" " + value),
)
framings = st.sampled_from(
    ["length"] * 4 + ["chunked"] * 4 + ["close", "short", "long", "te", "both", "dup"]
)
odd_codings = st.sampled_from(
    [b"gzip, chunked", b"chunked, gzip", b"gzip", b"identity", b"Chunked"]
)
extensions = st.one_of(
    st.just(b""),
    st.sampled_from([b";a=b", b";name", b';q="x y"', b" ;a=1", b";a=b;c=d"]),
)
extras = st.one_of(
    st.just(b""),
    st.just(b""),
    st.just(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED"),
    st.binary(min_size=1, max_size=12).filter(lambda raw: raw[:1] not in (b"\r", b"\n")),
    st.just(b"\r\n"),
)


@st.composite
def heads(draw: st.DrawFn, interim: bool) -> bytes:
    interims = [b"100", b"100", b"102", b"103", b"103", b"101"]
    status = draw(st.sampled_from(interims)) if interim else draw(statuses)
    lines = [draw(versions) + b" " + status + draw(reasons)]
    lines += [
        name + b":" + draw(st.sampled_from([b" ", b"", b"\t"])) + value
        for name, value in draw(fields)
    ]
    return b"\r\n".join(lines) + b"\r\n"


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size = draw(st.integers(1, max(1, len(rest))))
        piece, rest = rest[:size], rest[size:]
        digits = draw(st.sampled_from(["%x", "%X", "%04x"])) % size
        out.append(digits.encode() + draw(extensions) + b"\r\n" + piece + b"\r\n")
    out.append(b"0" + draw(extensions) + b"\r\n")
    for name, value in draw(st.lists(st.tuples(names, plain_values), max_size=3)):
        out.append(name + b": " + value + b"\r\n")
    return b"".join(out) + b"\r\n"


@st.composite
def answers(draw: st.DrawFn) -> tuple[bytes, str]:
    """(the bytes the server sends, the request method)."""
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))
    interims = b"".join(
        draw(st.lists(heads(interim=True), max_size=2).map(lambda hs: [h + b"\r\n" for h in hs]))
    )
    head = draw(heads(interim=False))
    if draw(st.integers(0, 9)) == 0:  # sometimes a head near or past the byte cap
        head += (
            b"x-pad: "
            + b"p" * draw(st.integers(MAX_HEADER_BYTES - 300, MAX_HEADER_BYTES))
            + b"\r\n"
        )
    if draw(st.integers(0, 9)) == 0:  # sometimes near or past the field cap
        head += b"".join(b"x-f%d: 1\r\n" % i for i in range(draw(st.integers(10, 20))))
    body = draw(st.binary(max_size=300))
    framing = draw(framings)
    if framing == "length":
        framed = b"content-length: %d\r\n\r\n" % len(body) + body
    elif framing in ("short", "long"):
        declared = len(body) + (3 if framing == "long" else -min(3, len(body)))
        framed = b"content-length: %d\r\n\r\n" % declared + body
    elif framing == "chunked":
        framed = b"transfer-encoding: chunked\r\n\r\n" + draw(chunked_body(body))
    elif framing == "te":
        coding = draw(odd_codings)
        framed = b"transfer-encoding: " + coding + b"\r\n\r\n" + draw(chunked_body(body))
    elif framing == "both":
        framed = b"content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n" + draw(
            chunked_body(body)
        )
    elif framing == "dup":
        framed = b"content-length: %d\r\ncontent-length: %d\r\n\r\n" % (len(body), len(body)) + body
    else:
        framed = b"\r\n" + body
    if method == "HEAD" and framing != "close":
        framed = framed.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"  # a HEAD answer has no body
    return interims + head + framed + draw(extras), method


# --- what may differ -----------------------------------------------------------------------


def head_facts(data: bytes) -> tuple[int, int, list[int]]:
    """(bytes up to the end of the final head, most fields in one head, statuses seen)."""
    position, most, statuses_seen = 0, 0, []
    while True:
        end = data.find(b"\r\n\r\n", position)
        if end < 0:
            return len(data) + 1, most, statuses_seen
        block = data[position:end].split(b"\r\n")
        most = max(most, len(block) - 1)
        status = block[0][9:12]
        statuses_seen.append(int(status) if status.isdigit() else -1)
        position = end + 4
        if not (100 <= statuses_seen[-1] < 200 and statuses_seen[-1] != 101):
            return position, most, statuses_seen


def stricter_than_h11(data: bytes) -> list[str]:
    """Reasons the client refuses what h11 accepts, each deliberate (or llhttp's strictness)."""
    size, most, seen = head_facts(data)
    head = data[:size]
    reasons = []
    if size > MAX_HEADER_BYTES:
        reasons.append("max_header_bytes")
    if most > MAX_HEADERS:
        reasons.append("max_headers")
    if any(not 200 <= status <= 599 and status not in (100, 102, 103) for status in seen):
        reasons.append("status outside 200..599 and not a known interim one (100, 102, 103)")
    if any(control in head for control in (b"\x01", b"\x7f", b"\x0b")):
        reasons.append("control bytes in a field value (llhttp)")
    lowered = head.lower()
    if lowered.count(b"content-length:") > 1:
        reasons.append("repeated Content-Length (llhttp)")
    if b"content-length:" in lowered and b"transfer-encoding:" in lowered:
        reasons.append("Content-Length with Transfer-Encoding (llhttp)")
    if re.search(rb"HTTP/(?!1\.1)\d\.\d 1\d\d", head):
        reasons.append("an interim head of a version other than 1.1, then more (llhttp)")
    if b" ;" in data[size:]:
        reasons.append("space before a chunk extension (llhttp)")
    return reasons


def check(data: bytes, got: Outcome, reference: Reference) -> None:
    want = reference.outcome
    reasons = stricter_than_h11(data)
    limits = [reason for reason in reasons if reason.startswith("max_")]
    if got.accepted:
        assert want.accepted, f"h11 refused ({want.error}) what the client accepted: {data!r}"
        assert (got.status, got.headers, got.body) == (want.status, want.headers, want.body)
        assert not limits, f"accepted a head past {limits}"
    elif want.accepted:
        assert reasons, f"refused ({got.error}) what h11 accepted: {data!r}"
    if got.error.startswith(HeaderLimitExceeded.__name__):
        assert limits, "refused for a limit that was not exceeded"


# --- the properties ------------------------------------------------------------------------

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=False,
)


@FUZZ
@given(answer=answers(), cuts=st.lists(st.integers(1, 10_000), max_size=4))
def test_the_client_reads_what_h11_reads_or_refuses_cleanly(
    harness: Harness, answer: tuple[bytes, str], cuts: list[int]
) -> None:
    data, method = answer
    reference = h11_parse(data, method)
    keep = reference.complete_before_eof and reference.keep_alive
    end = len(data) - len(reference.trailing) if reference.complete_before_eof else len(data)
    points = sorted({cut % end for cut in cuts if end > 1 and cut % end})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, end], strict=True)]
    pieces[-1] += data[end:]  # extra bytes arrive with the response's last bytes
    spoiled = keep and reference.trailing.strip(b"\r\n") != b""
    harness.server.violations.clear()
    got, probe = harness.run(Script(pieces, close=not keep, spoiled=spoiled), method, keep)
    event(f"h11 {'accepts' if reference.outcome.accepted else 'refuses'}")
    event(f"client {'accepts' if got.accepted else 'refuses'}")
    check(data, got, reference)
    if probe is not None:  # the connection, if reused, was left clean
        assert probe.accepted and probe.body == b"probe", probe
    assert not harness.server.violations
