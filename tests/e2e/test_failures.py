"""Failures injected at the mock upstream, seen through the real openai SDK and raw HTTP."""

import time
from dataclasses import dataclass, field

import httpx
import openai
import orjson
import pytest

from tests.support import DEFAULT_ROUTES, MOCK_KEY, OTHER_KEY

MESSAGES = [{"role": "user", "content": "hello there"}]
TIERS = {
    "free": {"routes": DEFAULT_ROUTES},
    "retry": {"routes": {"text": ["flaky", "ok-b"]}},
    "fallback": {"routes": {"text": ["notfound", "fail-500", "ok-b"]}},
    "limited": {"routes": {"text": ["ratelimited", "ok-b"]}},
    "allfail": {"routes": {"text": ["fail-503", "plain-502"]}},
    "clienterr": {"routes": {"text": ["bad-400", "ok-b"]}},
    "auth": {"routes": {"text": ["auth-401", "ok-b"]}},
    "slow": {"routes": {"text": ["slowfirst", "ok-b"]}},
    "drop": {"routes": {"text": ["drop", "ok-b"]}},
    "dropnow": {"routes": {"text": ["drop-now", "ok-b"]}},
    "cross": {"routes": {"text": ["fail-503", "other-ok"]}},
    "variety": {"routes": {"text": ["ok", "nousage", "onfinish", "crlf", "slow", "stall"]}},
    "too429": {"routes": {"text": ["fail-429"]}},
}


@pytest.fixture
def gw(start_gateway):
    return start_gateway(TIERS, tiers_extra={"settings": {"max_body_mb": 1}})


def sdk(gw, tier):
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key(tier), max_retries=0)


@dataclass
class Answer:
    headers: httpx.Headers
    completion: object = None
    chunks: list = field(default_factory=list)
    stream_error: openai.APIError | None = None

    @property
    def text(self):
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)


def chat(gw, tier, **kwargs):
    """Call the gateway with the SDK; a stream is read to its end inside the client's life."""
    with sdk(gw, tier) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=kwargs.pop("model", "text"), messages=MESSAGES, **kwargs
        )
        answer = Answer(raw.headers)
        if not kwargs.get("stream"):
            answer.completion = raw.parse()
            return answer
        try:
            for chunk in raw.parse():
                answer.chunks.append(chunk)
        except openai.APIError as error:
            answer.stream_error = error
        return answer


def test_retry_same_model_then_succeed(gw, upstream):
    raw = chat(gw, "retry", stream=True)
    assert raw.text.startswith("Hello from mock/flaky-1")
    assert raw.headers["x-gateway-attempts"] == "2"
    assert raw.headers["x-gateway-fallback"] == "false"
    assert upstream.count("mock/flaky-1") == 2


def test_fallback_order_and_indicators(gw, upstream):
    raw = chat(gw, "fallback")
    assert raw.headers["x-gateway-model"] == "ok-b"
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-attempts"] == "4"
    assert upstream.count("mock/notfound") == 1  # model_not_found: next model at once
    assert upstream.count("mock/fail-500") == 2  # retried, then fell back


def test_rate_limit_retry_after_ms_is_honoured(gw, upstream):
    started = time.monotonic()
    raw = chat(gw, "limited")
    assert raw.headers["x-gateway-model"] == "ratelimited"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert time.monotonic() - started >= 0.05


def test_every_target_failing_gives_the_last_status_and_what_was_tried(gw):
    with pytest.raises(openai.InternalServerError) as raised:
        chat(gw, "allfail")
    assert raised.value.status_code == 502
    message = raised.value.message
    assert "fail-503: http_503" in message and "plain-502: http_502" in message
    with pytest.raises(openai.InternalServerError):
        chat(gw, "allfail", stream=True)  # before the first byte: a real HTTP status


def test_upstream_429_everywhere_reaches_the_client_as_429_with_retry_after(gw):
    response = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.key('too429')}"},
        json={"model": "text", "messages": MESSAGES},
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "dynamic_request_limited"


def test_client_errors_pass_through_without_fallback(gw, upstream):
    with pytest.raises(openai.BadRequestError) as raised:
        chat(gw, "clienterr")
    assert raised.value.body["type"] == "BadRequestError"
    assert upstream.count("mock/ok-b") == 0 and upstream.count("mock/bad-400") == 1


def test_upstream_auth_error_never_echoes_the_key(gw):
    with pytest.raises(openai.AuthenticationError) as raised:
        chat(gw, "auth")
    assert MOCK_KEY not in raised.value.message and "[redacted]" in raised.value.message


def test_slow_first_byte_falls_back(gw, upstream):
    raw = chat(gw, "slow", stream=True)
    assert raw.text and raw.stream_error is None
    assert raw.headers["x-gateway-model"] == "ok-b"
    assert upstream.count("mock/slowfirst-3") == 2


def test_connection_cut_mid_stream_ends_with_an_in_band_error(gw):
    raw = chat(gw, "drop", stream=True)
    assert raw.chunks and raw.text.startswith("Hello")
    assert "mid-stream" in raw.stream_error.message


def test_connection_cut_before_the_answer_is_retried_and_falls_back(gw, upstream):
    raw = chat(gw, "dropnow")
    assert raw.headers["x-gateway-model"] == "ok-b"
    assert upstream.count("mock/drop-0") == 2


def test_idle_timeout_between_chunks_is_reported_in_band(gw):
    raw = chat(gw, "variety", model="stall", stream=True)
    assert "idle" in raw.stream_error.message


@pytest.mark.parametrize("model", ["nousage", "onfinish", "crlf", "slow"])
def test_stream_variants_relay_completely(gw, model):
    with sdk(gw, "variety") as client:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from mock/")


def test_cross_provider_fallback_uses_that_providers_key(gw, upstream):
    raw = chat(gw, "cross")
    assert raw.headers["x-gateway-provider"] == "other"
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {OTHER_KEY}"


def test_bring_your_own_key(gw, upstream):
    raw = chat(gw, "free", extra_headers={"x-upstream-api-key": "sk-user-own-key-42"})
    assert raw.headers["x-gateway-byok"] == "true"
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-user-own-key-42"
    # never sent to another provider: the cross-provider fallback is skipped
    with pytest.raises(openai.APIStatusError):
        chat(gw, "cross", extra_headers={"x-upstream-api-key": "sk-user-own-key-42"})
    assert all(
        r.headers["authorization"] != "Bearer sk-user-own-key-42"
        for r in upstream.requests_for("other/ok")
    )


def post(gw, path, content, content_type="application/json", method="POST"):
    return httpx.request(
        method,
        gw.url + path,
        content=content,
        headers={"authorization": f"Bearer {gw.key()}", "content-type": content_type},
    )


def assert_openai_error(response, status):
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_bad_input_gets_openai_shaped_errors(gw):
    assert_openai_error(post(gw, "/v1/chat/completions", b"{not json"), 400)
    assert_openai_error(post(gw, "/v1/chat/completions", b"[1, 2]"), 400)
    assert_openai_error(post(gw, "/v1/chat/completions", b"model=x", "text/plain"), 415)
    big = orjson.dumps(
        {"model": "text", "messages": [{"role": "user", "content": "x" * 2_000_000}]}
    )
    assert_openai_error(post(gw, "/v1/chat/completions", big), 413)
    assert_openai_error(post(gw, "/nowhere", b"{}"), 404)
    assert_openai_error(post(gw, "/v1/chat/completions", b"", method="GET"), 405)
    error = assert_openai_error(
        post(
            gw,
            "/v1/chat/completions",
            orjson.dumps({"model": "text", "messages": MESSAGES, "max_tokens": "lots"}),
        ),
        400,
    )
    assert error["param"] == "max_tokens"
    assert_openai_error(post(gw, "/v1/audio/transcriptions", b"{}"), 415)


def test_chunked_body_over_the_limit_is_413(gw):
    def body():
        for _ in range(40):
            yield b"x" * 65536

    response = httpx.post(
        gw.url + "/v1/chat/completions",
        content=body(),
        headers={"authorization": f"Bearer {gw.key()}", "content-type": "application/json"},
    )
    assert_openai_error(response, 413)


def test_client_disconnect_frees_the_stream(gw):
    headers = {"authorization": f"Bearer {gw.key('variety')}"}
    body = {"model": "slow", "messages": MESSAGES, "stream": True}
    with httpx.stream(
        "POST", gw.base_url + "/chat/completions", json=body, headers=headers
    ) as response:
        next(response.iter_raw())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        scrape = httpx.get(gw.url + "/metrics").text
        if "gateway_open_streams 0.0" in scrape and "gateway_inflight_requests 0.0" in scrape:
            break
        time.sleep(0.05)
    assert "gateway_open_streams 0.0" in scrape
    assert 'status="499"' in scrape
