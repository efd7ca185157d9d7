"""Issue 23 item 19: a hung upstream holds a request no longer than ``retry.deadline_s``,
across every retry and fallback; the client gets a 504 in OpenAI's shape that says so."""

import time

import httpx
import openai
import pytest

from tests.support import routes_doc

HUNG = {"free": {"routes": {"text": ["slowfirst", "slowfirst-b", "slowfirst-c"]}}}
RETRY = routes_doc("http://unused")["retry"]
MESSAGES = [{"role": "user", "content": "hello"}]


def post(gw, **body):
    started = time.monotonic()
    answer = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "text", "messages": MESSAGES, **body},
        timeout=10,
    )
    return answer, time.monotonic() - started


def test_hung_upstreams_answer_504_at_the_deadline(start_gateway) -> None:
    # 3 models x 2 attempts x 1 s first-byte timeout = 6 s without a deadline
    gw = start_gateway(HUNG, routes_extra={"retry": {**RETRY, "deadline_s": 2.5}})
    answer, elapsed = post(gw)
    assert answer.status_code == 504
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "deadline_exceeded" and error["type"] == "api_error"
    assert "2.5 s deadline" in error["message"], error
    assert 2.4 <= elapsed < 3.4, (elapsed, error)
    # the SDK sees the same answer as its 5xx class
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="text", messages=MESSAGES)
    assert caught.value.status_code == 504


def test_a_stream_gets_the_same_504_before_its_first_byte(start_gateway) -> None:
    gw = start_gateway(HUNG, routes_extra={"retry": {**RETRY, "deadline_s": 1.5}})
    answer, elapsed = post(gw, stream=True)
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "deadline_exceeded"
    assert elapsed < 2.4, elapsed
