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

from gateway.runtime import Runtime
from gateway.upstream import create_transport
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
        await asyncio.sleep(0)  # the close may or may not have been noticed yet: both must work
        assert (await fetch(transport, post(server.url()))).status_code == 200
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
