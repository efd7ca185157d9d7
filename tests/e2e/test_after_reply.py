"""The pipeline's listeners (metrics, billing, access log) run after an answer's last byte."""

import logging
import threading
import time

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.observe.access_log import ACCESS_LOG
from tests.support import DEFAULT_ROUTES

TIERS = {
    "free": {"routes": DEFAULT_ROUTES, "quotas": {"text_generation": {"requests_per_day": 50}}}
}
CHAT = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}


class HeldLine(logging.Handler):
    """Holds the access-log line, and with it the gateway's event loop, until released: the
    listeners run one after another, so while it is held none has finished."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.written = threading.Event()
        self.held_until_released = False

    def emit(self, record: logging.LogRecord) -> None:
        self.held_until_released = self.release.wait(timeout=10)
        self.written.set()


@pytest.fixture
def held():
    logger = logging.getLogger(ACCESS_LOG)
    handler, level = HeldLine(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    handler.release.set()
    logger.removeHandler(handler)
    logger.setLevel(level)


def requests_used(gw) -> int:
    headers = {"authorization": f"Bearer {gw.key()}"}
    quota = httpx.get(gw.base_url + "/quota", headers=headers).json()
    return int(quota["capabilities"]["text_generation"]["requests"]["used"])


@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/chat/completions", CHAT, 200),
        ("/messages", {**CHAT, "max_tokens": 20}, 200),  # a bridge carries the end along
        ("/chat/completions", {**CHAT, "model": "no-such-model"}, 404),
    ],
)
def test_a_json_answer_is_sent_before_the_listeners_run(
    start_gateway, redis, held, path, body, status
):
    gw = start_gateway(TIERS, runtime=Runtime(redis_url=redis.url))
    headers = {"authorization": f"Bearer {gw.key()}"}
    response = httpx.post(gw.base_url + path, json=body, headers=headers, timeout=5)
    assert response.status_code == status and response.json()  # whole, while billing waits
    assert not held.written.is_set()
    held.release.set()
    assert held.written.wait(5) and held.held_until_released
    if status == 200:  # billed all the same, once
        deadline = time.monotonic() + 5
        while requests_used(gw) != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests_used(gw) == 1
