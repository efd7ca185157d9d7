"""The gateway's own HTTP/1.1 transport against a scripted raw TCP server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.providers.bodies import AnswerTooLarge, body_chunks, read_body
from gateway.providers.openai import FORWARDED_RESPONSE_HEADERS, forwarded_headers
from gateway.providers.transport import create_transport
from gateway.wire import NativeTransport
from tests.support import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@dataclass
class RawServer:
    """Reads each request (head + content-length or chunked body) and lets ``handler`` answer;
    the handler returns False to stop serving that connection."""

    handler: Handler
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests.append(request)
                if not await self.handler(reader, writer, request):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    def url(self, path: str = "/v1/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lowered = head.lower()
    if b"content-length:" in lowered:
        length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
        return head + await reader.readexactly(length)
    if b"transfer-encoding: chunked" in lowered:
        body = b""
        while size := int((await reader.readline()).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readline()
        return head + body
    return head


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[RawServer]:
    server = RawServer(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def answer(reply: bytes, keep: bool = True) -> Handler:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        writer.write(reply)
        await writer.drain()
        return keep

    return handler


async def fetch(transport: NativeTransport, request: httpx.Request) -> httpx.Response:
    response = await transport.handle_async_request(request)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


def post(url: str, timeout: float = 5.0, **kwargs: object) -> httpx.Request:
    timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    return httpx.Request("POST", url, extensions={"timeout": timeouts}, **kwargs)  # type: ignore[arg-type]


def get(url: str, timeout: float | None = 5.0, method: str = "GET") -> httpx.Request:
    timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    return httpx.Request(method, url, extensions={"timeout": timeouts})


@synchronous
async def test_keeps_the_connection_alive_between_requests() -> None:
    async with raw_server(answer(OK)) as server:
        transport = NativeTransport()
        for _ in range(3):
            response = await fetch(transport, post(server.url(), content=b'{"a":1}'))
            assert (response.status_code, response.content) == (200, b"{}")
        await transport.aclose()
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"a":1}')
    assert b"host: 127.0.0.1:" in server.requests[0].lower()


@synchronous
async def test_decodes_a_chunked_answer_as_it_arrives() -> None:
    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        return True

    async with raw_server(handler) as server:
        transport = NativeTransport()
        response = await transport.handle_async_request(post(server.url()))
        chunks = [chunk async for chunk in response.stream]  # type: ignore[union-attr]
        await response.aclose()
        assert chunks == [b"hello", b" world"]
        await fetch(transport, post(server.url()))
        await transport.aclose()
    assert server.connections == 1


@synchronous
async def test_a_body_ended_by_closing_the_connection_is_complete() -> None:
    handler = answer(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it", False)
    async with raw_server(handler) as server:
        transport = NativeTransport()
        response = await fetch(transport, post(server.url()))
        assert response.content == b"all of it"
        await fetch(transport, post(server.url()))
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_a_whole_body_is_read_as_it_came_or_as_it_comes_within_the_limit() -> None:
    async def later(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the body after the head: read as it comes
        writer.write(b"abcdef")
        return True

    for handler in (answer(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabcdef"), later):
        async with raw_server(handler) as server:
            transport = NativeTransport()
            response = await transport.handle_async_request(post(server.url()))
            assert await read_body(response, 6) == b"abcdef" and response.is_closed
            response = await transport.handle_async_request(post(server.url()))
            with pytest.raises(AnswerTooLarge):
                await read_body(response, 5)
            assert response.is_closed
            response = await transport.handle_async_request(post(server.url()))
            chunks = [chunk async for chunk in body_chunks(response)]  # read by a reader
            assert b"".join(chunks) == b"abcdef"
            await response.aclose()
            await fetch(transport, post(server.url()))
            await transport.aclose()
        assert server.connections == 1  # handed back to the pool after each
        assert len(server.requests) == 4


@synchronous
async def test_connection_close_is_respected() -> None:
    reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    async with raw_server(answer(reply, False)) as server:
        transport = NativeTransport()
        for _ in range(2):
            assert (await fetch(transport, post(server.url()))).content == b"{}"
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_a_reused_connection_the_server_closed_is_replaced_transparently() -> None:
    async with raw_server(answer(OK, keep=False)) as server:
        transport = NativeTransport()
        await fetch(transport, post(server.url()))
        await asyncio.sleep(0.05)  # the close is noticed: the POST never touches that socket
        response = await fetch(transport, post(server.url()))
        assert response.status_code == 200
        assert "gateway_replayed" not in response.extensions
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_a_get_on_a_connection_closed_under_it_is_sent_again() -> None:
    async with raw_server(answer(OK, keep=False)) as server:
        transport = NativeTransport()
        await fetch(transport, get(server.url()))
        await asyncio.sleep(0)  # the close may or may not have been noticed yet: both must work
        assert (await fetch(transport, get(server.url()))).status_code == 200
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_idle_connections_expire() -> None:
    async with raw_server(answer(OK)) as server:
        transport = NativeTransport(keepalive_expiry_s=0.05)
        await fetch(transport, post(server.url()))
        await asyncio.sleep(0.1)
        await fetch(transport, post(server.url()))
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_a_cut_in_the_middle_of_the_body_is_a_read_error() -> None:
    handler = answer(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", False)
    async with raw_server(handler) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.ReadError):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_a_fresh_connection_closed_before_any_answer_is_a_protocol_error() -> None:
    async def handler(_: asyncio.StreamReader, __: asyncio.StreamWriter, ___: bytes) -> bool:
        return False

    async with raw_server(handler) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_garbage_is_a_protocol_error() -> None:
    async with raw_server(answer(b"NOT HTTP AT ALL\r\n\r\n")) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_refused_connection_is_a_connect_error() -> None:
    transport = NativeTransport()
    with pytest.raises(httpx.ConnectError):
        await fetch(transport, post(f"http://127.0.0.1:{free_port()}/v1/x"))
    await transport.aclose()


@synchronous
async def test_silence_is_a_read_timeout_and_the_connection_is_dropped() -> None:
    async def handler(_: asyncio.StreamReader, __: asyncio.StreamWriter, ___: bytes) -> bool:
        await asyncio.sleep(1)
        return False

    async with raw_server(handler) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.ReadTimeout):
            await fetch(transport, post(server.url(), timeout=0.1))
        await transport.aclose()


@synchronous
async def test_the_connection_cap_queues_and_then_times_out() -> None:
    async def slow(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        await asyncio.sleep(0.3)
        writer.write(OK)
        return True

    async with raw_server(slow) as server:
        transport = NativeTransport(max_connections=1)
        first = asyncio.create_task(fetch(transport, post(server.url())))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await fetch(transport, post(server.url(), timeout=0.1))
        queued = asyncio.create_task(fetch(transport, post(server.url())))
        assert (await first).status_code == 200
        assert (await queued).status_code == 200
        await transport.aclose()
    assert server.connections == 1


@synchronous
async def test_a_stream_closed_early_drops_its_connection() -> None:
    async def endless(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(50):
            writer.write(b"4\r\ndata\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        return True

    async with raw_server(endless) as server:
        transport = NativeTransport()
        response = await transport.handle_async_request(post(server.url()))
        async for _chunk in response.stream:  # type: ignore[union-attr]
            break
        await response.aclose()
        await fetch(transport, post(server.url()))  # a fresh connection, not the busy one
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_multipart_uploads_are_streamed_with_their_length() -> None:
    async with raw_server(answer(OK)) as server:
        transport = NativeTransport()
        audio = b"\x00\x01" * 100_000
        request = post(server.url(), data={"model": "m"}, files={"file": ("a.wav", audio)})
        await fetch(transport, request)
        await transport.aclose()
    sent = server.requests[0]
    assert b"content-length:" in sent.lower()
    assert audio in sent and b'name="model"' in sent


@synchronous
async def test_unknown_length_bodies_are_sent_chunked() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with raw_server(answer(OK)) as server:
        transport = NativeTransport()
        await fetch(transport, post(server.url(), content=pieces()))
        await transport.aclose()
    assert server.requests[0].lower().count(b"transfer-encoding: chunked") == 1
    assert server.requests[0].endswith(b"abcdef")


@synchronous
async def test_a_large_answer_arrives_whole_through_read_flow_control() -> None:
    payload = bytes(range(256)) * 20_000  # 5 MB, well past the read high-water mark
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload)
    async with raw_server(answer(head + payload)) as server:
        transport = NativeTransport()
        response = await transport.handle_async_request(post(server.url()))
        received = bytearray()
        async for chunk in response.stream:  # type: ignore[union-attr]
            received += chunk
            await asyncio.sleep(0)  # a slow reader: the socket must pause, then resume
        await response.aclose()
        assert bytes(received) == payload
        await fetch(transport, post(server.url()))  # and the connection is reusable
        await transport.aclose()
    assert server.connections == 1


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    files = ["-keyout", str(key), "-out", str(cert)]
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run([*command, *subject, *files], check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_upstreams_are_verified(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def scenario() -> None:
        handler = answer(OK)
        server = RawServer(handler)
        listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=server_context)
        port = listener.sockets[0].getsockname()[1]
        url = f"https://localhost:{port}/v1/x"
        trusting = NativeTransport(ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert (await fetch(trusting, post(url))).content == b"{}"
        await trusting.aclose()
        default = NativeTransport()  # the system's CAs do not know this certificate
        with pytest.raises(httpx.ConnectError):
            await fetch(default, post(url))
        await default.aclose()
        listener.close()

    asyncio.run(scenario())


@synchronous
async def test_an_abandoned_response_gives_its_connection_slot_back() -> None:
    async with raw_server(answer(OK)) as server:
        transport = NativeTransport(max_connections=1)
        response = await transport.handle_async_request(post(server.url()))
        assert response.status_code == 200
        del response  # never read nor closed
        gc.collect()
        await asyncio.sleep(0.05)  # the socket closes; the pool notices
        assert (await fetch(transport, post(server.url(), timeout=1.0))).status_code == 200
        await transport.aclose()
    assert server.connections == 2


def test_it_is_the_default_transport_everywhere() -> None:
    assert Runtime().transport == Runtime.from_env({}).transport == "native"
    assert isinstance(create_transport(Runtime().transport), NativeTransport)


# --- hardening (issue 10, defects 8 and 10): each scenario once failed or hung ------------------


async def raw_body(response: httpx.Response) -> bytes:
    """The body exactly as the transport hands it out (no httpx decoding)."""
    try:
        return b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
    finally:
        await response.aclose()


@synchronous
async def test_a_second_response_in_the_same_read_is_neither_appended_nor_reused() -> None:
    first = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nFIRST"
    smuggled = b"HTTP/1.1 404 Not Found\r\ncontent-length: 8\r\n\r\nSMUGGLED"
    async with raw_server(answer(first + smuggled)) as server:
        transport = NativeTransport()
        response = await fetch(transport, post(server.url()))
        assert (response.status_code, response.content) == (200, b"FIRST")
        assert response.headers.get_list("content-length") == ["5"]
        again = await fetch(transport, post(server.url()))
        assert again.content == b"FIRST"  # a fresh connection, not the rest of the first one
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_garbage_after_a_complete_response_drops_the_connection() -> None:
    async with raw_server(answer(OK + b"XYZ")) as server:
        transport = NativeTransport()
        assert (await fetch(transport, post(server.url()))).content == b"{}"
        assert (await fetch(transport, post(server.url()))).content == b"{}"
        await transport.aclose()
    assert server.connections == 2


@synchronous
async def test_trailers_do_not_merge_into_the_headers() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
        b"2\r\nok\r\n0\r\ncontent-type: evil/trailer\r\nx-trailer: 1\r\n\r\n"
    )
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()
        response = await fetch(transport, post(server.url()))
        await transport.aclose()
    assert response.content == b"ok"
    assert response.headers.get_list("content-type") == ["text/plain"]
    assert "x-trailer" not in response.headers


@pytest.mark.parametrize("status", [b"999", b"600", b"099", b"000", b"104", b"199"])
@synchronous
async def test_a_status_outside_100_to_599_is_a_protocol_error(status: bytes) -> None:
    reply = b"HTTP/1.1 %b Odd\r\ncontent-length: 2\r\n\r\n{}" % status
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.RemoteProtocolError, match="status"):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_interim_answers_are_skipped_for_the_final_one() -> None:
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
    )
    async with raw_server(answer(interim + OK)) as server:
        transport = NativeTransport()
        response = await fetch(transport, post(server.url()))
        assert (await fetch(transport, post(server.url()))).status_code == 200
        await transport.aclose()
    assert (response.status_code, response.content) == (200, b"{}")
    assert "link" not in response.headers
    assert server.connections == 1


@synchronous
async def test_switching_protocols_is_a_protocol_error() -> None:
    reply = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nxx"
    )
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.RemoteProtocolError, match="101"):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_non_ascii_header_values_survive_byte_for_byte() -> None:
    value = "text/plain; charset=ü€".encode()
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\ncontent-length: 2\r\n\r\n{}" % value
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()
        response = await fetch(transport, post(server.url()))
        await transport.aclose()
    # Decoded as latin-1, so re-encoding for the client (Starlette does) gives the same bytes.
    assert response.headers["content-type"].encode("latin-1") == value


@synchronous
async def test_answer_fields_read_as_httpx_headers_read_them() -> None:
    fields = [
        (b"Content-Disposition", b"attachment"),
        (b"CONTENT-TYPE", b"a"),
        (b"X-Other", b"\xe9"),
        (b"content-type", b"b"),
    ]
    head = b"".join(b"%b: %b\r\n" % field for field in fields)
    reply = b"HTTP/1.1 200 OK\r\n%bcontent-length: 2\r\n\r\n{}" % head
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()
        response = await fetch(transport, post(server.url()))
        await transport.aclose()
    expected = httpx.Headers([*fields, (b"content-length", b"2")], encoding="latin-1")
    assert response.headers.raw == expected.raw
    for name in ("content-type", "Content-Disposition", "x-other", "missing"):
        assert response.headers.get(name) == expected.get(name)
        assert response.headers.get_list(name) == expected.get_list(name)
    forwarded = forwarded_headers(response)
    assert forwarded == {"content-type": "a, b", "content-disposition": "attachment"}
    assert list(forwarded) == list(FORWARDED_RESPONSE_HEADERS)  # in the order it names them


@synchronous
async def test_a_head_request_does_not_wait_for_a_body() -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()
        async with asyncio.timeout(2):
            response = await fetch(transport, get(server.url(), timeout=None, method="HEAD"))
        assert (response.status_code, response.content) == (200, b"")
        assert response.headers["content-length"] == "1000"
        await transport.aclose()


@pytest.mark.parametrize(
    "encodings",
    [[b"chunked, gzip"], [b"gzip, chunked"], [b"gzip"], [b"identity"], [b"chunked", b"chunked"]],
)
@synchronous
async def test_transfer_codings_other_than_chunked_alone_are_refused(
    encodings: list[bytes],
) -> None:
    fields = b"".join(b"transfer-encoding: %b\r\n" % value for value in encodings)
    reply = b"HTTP/1.1 200 OK\r\n%b\r\n2\r\nok\r\n0\r\n\r\n" % fields
    async with raw_server(answer(reply, keep=False)) as server:
        transport = NativeTransport()
        with pytest.raises(httpx.RemoteProtocolError, match="Transfer-Encoding"):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@pytest.mark.parametrize(
    "header",
    [
        (b"x-note", b"a\r\nx-injected: 1"),
        (b"x-note", b"a\nb"),
        (b"x-note", b"a\rb"),
        (b"x-note", b"a\x00b"),
        (b"x note", b"a"),
        (b"x-note:", b"a"),
        (b"", b"a"),
    ],
)
@synchronous
async def test_outgoing_header_injection_is_refused_before_anything_is_sent(
    header: tuple[bytes, bytes],
) -> None:
    async with raw_server(answer(OK)) as server:
        transport = NativeTransport()
        request = post(server.url(), content=b"{}", headers=[header])
        with pytest.raises(httpx.LocalProtocolError):
            await fetch(transport, request)
        assert (await fetch(transport, post(server.url()))).status_code == 200
        await transport.aclose()
    assert server.requests == [server.requests[0]] and b"x-note" not in server.requests[0]


@synchronous
async def test_a_stale_read_timer_never_fires_on_a_later_request() -> None:
    async def late_second(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        if len(server.requests) == 2:
            await asyncio.sleep(0.3)  # longer than the first request's read timeout
        writer.write(OK)
        return True

    async with raw_server(late_second) as server:
        transport = NativeTransport()
        await fetch(transport, post(server.url(), timeout=0.1))
        response = await fetch(transport, get(server.url(), timeout=None))  # no read timeout
        assert response.status_code == 200
        await transport.aclose()
    assert server.connections == 1


@synchronous
async def test_a_shorter_read_timeout_after_a_longer_one_is_honoured() -> None:
    async def silent_second(
        _: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes
    ) -> bool:
        if len(server.requests) == 2:
            await asyncio.sleep(5)
        writer.write(OK)
        return True

    async with raw_server(silent_second) as server:
        transport = NativeTransport()
        await fetch(transport, post(server.url(), timeout=30.0))
        async with asyncio.timeout(2):  # the 30 s timer of the first request must not rule
            with pytest.raises(httpx.ReadTimeout):
                await fetch(transport, post(server.url(), timeout=0.1))
        await transport.aclose()


@synchronous
async def test_a_woken_then_cancelled_pool_waiter_passes_its_wake_up_on() -> None:
    async with raw_server(answer(OK)) as server:
        transport = NativeTransport(max_connections=1)
        held = await transport.handle_async_request(post(server.url()))
        first = asyncio.create_task(fetch(transport, post(server.url(), timeout=1.0)))
        second = asyncio.create_task(fetch(transport, post(server.url(), timeout=1.0)))
        await asyncio.sleep(0.05)  # both wait for the only connection
        await held.aread()
        await held.aclose()  # wakes `first`...
        first.cancel()  # ...which is cancelled before it could run
        assert (await second).status_code == 200
        with pytest.raises(asyncio.CancelledError):
            await first
        await transport.aclose()


def _answer_then_hang_up_on_the_second_request() -> Handler:
    """Answers every request except the second, which is read and left without an answer."""
    seen = 0

    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        nonlocal seen
        seen += 1
        if seen == 2:
            return False
        writer.write(OK)
        return True

    return handler


@synchronous
async def test_a_post_that_may_have_reached_the_server_is_not_replayed() -> None:
    async with raw_server(_answer_then_hang_up_on_the_second_request()) as server:
        transport = NativeTransport()
        await fetch(transport, post(server.url(), content=b"{}"))
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(transport, post(server.url(), content=b'{"charge": 1}'))
        await transport.aclose()
    assert len(server.requests) == 2


@synchronous
async def test_an_idempotent_request_is_replayed_and_says_so() -> None:
    async with raw_server(_answer_then_hang_up_on_the_second_request()) as server:
        transport = NativeTransport()
        assert "gateway_replayed" not in (await fetch(transport, get(server.url()))).extensions
        response = await fetch(transport, get(server.url()))
        await transport.aclose()
    assert response.status_code == 200
    assert response.extensions["gateway_replayed"] is True
    assert (len(server.requests), server.connections) == (3, 2)


@synchronous
async def test_a_response_head_over_the_byte_cap_is_refused_and_the_connection_dropped() -> None:
    reply = b"HTTP/1.1 200 OK\r\nx-big: %b\r\ncontent-length: 2\r\n\r\n{}" % (b"a" * 5000)
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport(max_header_bytes=4096)
        with pytest.raises(httpx.RemoteProtocolError, match="max_header_bytes"):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_a_response_head_exactly_at_the_byte_cap_is_accepted() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-pad: "
    padding = b"a" * (4096 - len(head) - 4)
    async with raw_server(answer(head + padding + b"\r\n\r\n{}")) as server:
        transport = NativeTransport(max_header_bytes=4096)
        assert (await fetch(transport, post(server.url()))).content == b"{}"
        await transport.aclose()


@synchronous
async def test_too_many_response_headers_are_refused() -> None:
    fields = b"".join(b"x-%d: 1\r\n" % i for i in range(101))
    reply = b"HTTP/1.1 200 OK\r\n%bcontent-length: 2\r\n\r\n{}" % fields
    async with raw_server(answer(reply)) as server:
        transport = NativeTransport()  # at most 100 by default
        with pytest.raises(httpx.RemoteProtocolError, match="max_headers"):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_an_endless_header_block_is_cut_at_the_cap() -> None:
    async def endless(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nx-endless: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):  # 640 MB if nobody stops it
                writer.write(b"a" * 65536)
                await writer.drain()
        return False

    async with raw_server(endless) as server:
        transport = NativeTransport()  # 64 KiB by default
        with pytest.raises(httpx.RemoteProtocolError, match="max_header_bytes"):
            await fetch(transport, post(server.url()))
        await transport.aclose()


@synchronous
async def test_an_endless_trailer_is_cut_too() -> None:
    async def endless(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):
                writer.write(b"a" * 65536)
                await writer.drain()
        return False

    async with raw_server(endless) as server:
        transport = NativeTransport()
        response = await transport.handle_async_request(post(server.url()))
        with pytest.raises(httpx.RemoteProtocolError, match="max_header_bytes"):
            await raw_body(response)
        await transport.aclose()


@synchronous
async def test_the_body_is_handed_out_as_sent_never_decompressed() -> None:
    import gzip

    packed = gzip.compress(b"a" * 100_000)
    reply = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(packed)
    async with raw_server(answer(reply + packed)) as server:
        transport = NativeTransport()
        response = await transport.handle_async_request(post(server.url()))
        assert await raw_body(response) == packed
        await transport.aclose()


@synchronous
async def test_a_callers_transfer_encoding_is_replaced_not_repeated() -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b"abc"

    async with raw_server(answer(OK)) as server:
        transport = NativeTransport()
        headers = {"transfer-encoding": "chunked"}
        await fetch(transport, post(server.url(), content=pieces(), headers=headers))
        await transport.aclose()
    assert server.requests[0].lower().count(b"transfer-encoding") == 1
