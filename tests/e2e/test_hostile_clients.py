"""Hostile clients against a served gateway: malformed bodies get a 4xx, never a 500; slow
clients are cut off in bounded time; a client that leaves mid-body is recorded, not a 500."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningGateway, StartGateway
from tests.e2e.test_serve import KEY as SERVE_KEY
from tests.e2e.test_serve import Served
from tests.mock_upstream import MockUpstream
from tests.support import MOCK_KEY, free_port, routes_doc, tiers_doc

WAV = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + b"\x00" * 28


@pytest.fixture
def gw(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway()


def post(
    gw: RunningGateway, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.key()}", **(headers or {})}
    return httpx.post(gw.base_url + path, headers=headers, timeout=10, **kwargs)


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def nested(levels: int, leaf: object = "x") -> object:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data", b"--x\r\nabc"),  # no boundary parameter
        ("multipart/form-data; boundary=y", b"--x\r\nabc"),  # body does not match it
        ("multipart/form-data; boundary=", b"garbage"),
    ],
    ids=["missing-boundary", "wrong-boundary", "empty-boundary"],
)
def test_multipart_with_a_bad_boundary_is_a_400(
    gw: RunningGateway, content_type: str, body: bytes
) -> None:
    response = post(
        gw, "/audio/transcriptions", content=body, headers={"content-type": content_type}
    )
    assert_openai_error(response, 400)


def test_multipart_with_too_many_fields_is_a_400(gw: RunningGateway) -> None:
    fields = {f"field{i}": "v" for i in range(70)}
    response = post(gw, "/audio/transcriptions", data=fields, files={"file": ("a.wav", WAV)})
    error = assert_openai_error(response, 400)
    assert "fields" in str(error["message"])


@pytest.mark.parametrize("tool_calls", [5, 1.5, True])
def test_tool_calls_that_are_not_a_list_do_not_crash_the_estimate(
    gw: RunningGateway, tool_calls: object
) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": tool_calls}]
    response = post(gw, "/chat/completions", json={"model": "text", "messages": messages})
    assert response.status_code == 200, response.text  # the mock upstream is lenient


@pytest.mark.parametrize(
    "path, body",
    [
        ("/chat/completions", {"model": "text", "messages": nested(900)}),
        ("/completions", {"model": "code-ok", "prompt": nested(900)}),
        ("/embeddings", {"model": "embed", "input": nested(300)}),
        ("/chat/completions", {"model": "text", "messages": [], "metadata": nested(300)}),
    ],
    ids=["messages-900", "prompt-900", "input-300", "other-field-300"],
)
def test_deeply_nested_bodies_are_a_400(gw: RunningGateway, path: str, body: object) -> None:
    error = assert_openai_error(post(gw, path, json=body), 400)
    assert "nested deeper than 64" in str(error["message"])


def test_nesting_at_the_limit_is_accepted(gw: RunningGateway) -> None:
    body = {"model": "text", "messages": [{"role": "user", "content": "hi"}], "x": nested(62)}
    assert post(gw, "/chat/completions", json=body).status_code == 200


@pytest.mark.parametrize(
    "path, field, value",
    [
        ("/images/generations", "n", 9223372036854775807),
        ("/images/generations", "n", 0),
        ("/images/generations", "n", 2.5),
        ("/images/generations", "n", "3"),
        ("/chat/completions", "n", 10**6),
        ("/chat/completions", "max_tokens", 9223372036854775807),
        ("/chat/completions", "max_completion_tokens", -1),
        ("/chat/completions", "max_tokens", True),
        ("/completions", "max_tokens", 2**31),
    ],
)
def test_numbers_the_gateway_meters_with_are_range_checked(
    gw: RunningGateway, path: str, field: str, value: object
) -> None:
    model = {"/images/generations": "image", "/completions": "code-ok"}.get(path, "text")
    body = {"model": model, "prompt": "x", "messages": [{"role": "user", "content": "x"}]}
    error = assert_openai_error(post(gw, path, json={**body, field: value}), 400)
    assert error["param"] == field
    assert gw.gateway.metrics.registry.get_sample_value("gateway_inflight_requests") == 0


# -- slow and vanishing clients against `gateway serve` (issue 10 #11) ----------------------

HEADER_S, BODY_S, BODY_IDLE_S = 0.5, 2.0, 0.5
ADMIN_TOKEN = "admin-token-for-slow-clients-0123456789"
HANG_GUARD_S = 15  # a socket read that waits this long means the server held the connection


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream_server: MockUpstream
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("slow-clients")
    (directory / "routes.yaml").write_text(
        yaml.safe_dump(routes_doc(mock_upstream_server.base_url))
    )
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    argv = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config-dir",
        str(directory),
        "--port",
        str(free_port()),
        "--header-timeout",
        str(HEADER_S),
        "--body-timeout",
        str(BODY_S),
        "--body-idle-timeout",
        str(BODY_IDLE_S),
    ]
    env = {
        "MOCK_KEY": MOCK_KEY,
        "GATEWAY_KEYS": f"{SERVE_KEY}=free:alice",
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    server = Served(argv, env, directory)
    yield server
    server.stop()


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.settimeout(HANG_GUARD_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it holds the connection."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server held the connection for {HANG_GUARD_S} s: {received!r}")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def request_head(content_length: int, path: str = "/v1/chat/completions") -> bytes:
    method, key = ("PUT", ADMIN_TOKEN) if "/admin/" in path else ("POST", SERVE_KEY)
    return (
        f"{method} {path} HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    ).encode()


def assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "request_timeout"


def inflight(served: Served) -> float:
    text = httpx.get(served.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_inflight_requests":
            return sum(sample.value for sample in family.samples)
    raise AssertionError("no gateway_inflight_requests in the scrape")


def request_lines(served: Served) -> list[dict[str, object]]:
    return [line for line in served.log_lines() if line.get("event") == "request"]


def test_connections_that_send_nothing_are_closed(served: Served) -> None:
    sockets = [connect(served) for _ in range(200)]
    try:
        for sock in sockets:
            assert read_until_closed(sock) == b""
    finally:
        for sock in sockets:
            sock.close()


def test_a_partial_header_gets_a_408_and_is_closed(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nx-slow: 1")
        assert_408(read_until_closed(sock))


def test_a_header_sent_a_byte_at_a_time_is_cut_off(served: Served) -> None:
    head = request_head(2)
    with connect(served) as sock:
        for index in range(len(head)):
            try:
                sock.sendall(head[index : index + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(HEADER_S / 10)
        else:
            pytest.fail("the whole header trickled in: nothing bounds the header time")
        read_until_closed(sock)


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_a_partial_body_gets_a_408_recorded_as_such(served: Served, trickle: bool) -> None:
    before = len(request_lines(served))
    with connect(served) as sock:
        sock.sendall(request_head(10_000) + b'{"model": "text", ')
        if trickle:  # a byte within every idle window: only the total bound ends it
            for _ in range(int(HANG_GUARD_S / (BODY_IDLE_S / 5))):
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(BODY_IDLE_S / 5)
        assert_408(read_until_closed(sock))
    assert wait_for(lambda: len(request_lines(served)) > before)
    assert request_lines(served)[-1]["status"] == 408
    assert inflight(served) == 0


def test_a_partial_admin_body_gets_a_408_without_a_traceback(served: Served) -> None:
    log_start = len(served.log.read_text())
    with connect(served) as sock:
        sock.sendall(request_head(100, "/v1/admin/users/bob/budget") + b'{"usd_per_day"')
        assert_408(read_until_closed(sock))
    assert "Traceback" not in served.log.read_text()[log_start:]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/admin/users/bob/budget"])
def test_a_client_that_leaves_mid_body_is_a_499_without_a_traceback(
    served: Served, path: str
) -> None:
    before, log_start = len(request_lines(served)), len(served.log.read_text())
    with connect(served) as sock:
        sock.sendall(request_head(10_000, path) + b'{"model": "text", ')
        time.sleep(0.1)  # the gateway is reading the body
    if path == "/v1/chat/completions":
        assert wait_for(lambda: len(request_lines(served)) > before)
        assert request_lines(served)[-1]["status"] == 499
    assert wait_for(lambda: inflight(served) == 0)
    assert "Traceback" not in served.log.read_text()[log_start:]


def test_keep_alive_requests_slower_than_the_header_bound_are_served(served: Served) -> None:
    body = orjson.dumps({"model": "text", "messages": [{"role": "user", "content": "hi"}]})
    with httpx.Client(base_url=served.url) as client:
        for _ in range(3):  # one connection; each request starts after the header bound
            answer = client.post(
                "/v1/chat/completions",
                content=body,
                headers={
                    "authorization": f"Bearer {SERVE_KEY}",
                    "content-type": "application/json",
                },
            )
            assert answer.status_code == 200
            time.sleep(HEADER_S * 1.5)
        assert client.get("/healthz").status_code == 200


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/quota HTTP/1.1\r\nhost: g\r\ncontent-length: 5/@M@X\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nhost g\r\n\r\n",
    ],
)
def test_a_request_the_parser_refuses_gets_an_openai_shaped_400(
    served: Served, head: bytes
) -> None:
    with connect(served) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock)
    status_line, _, body = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 400 "), answer
    assert b"content-type: application/json" in status_line.lower()
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
