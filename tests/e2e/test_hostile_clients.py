"""Hostile clients against a served gateway: malformed bodies get a 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningGateway, StartGateway

WAV = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + b"\x00" * 28


@pytest.fixture
def gw(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway()


def post(gw: RunningGateway, path: str, **kwargs: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.key()}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(gw.base_url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


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
