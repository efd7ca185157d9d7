"""Batches across gateway processes on one Redis: a replica SIGKILLed mid-batch loses no line
and no line is answered (or sent upstream) twice; a batch outlives every replica."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.batches.test_openai_batches import chat_line, finished, jsonl, wait_for
from tests.e2e.test_serve import Served
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES, MOCK_KEY, free_port, routes_doc, tiers_doc

pytestmark = pytest.mark.slow
KEY = "sk-batch-replicas-0123456789"
LINES = 120
IN_FLIGHT = 4  # GATEWAY_BATCH_CONCURRENCY of each process


class Replicas:
    def __init__(self, tmp_path: Path, redis: RedisServer) -> None:
        self._tmp = tmp_path
        self._env = {
            "MOCK_KEY": MOCK_KEY,
            "GATEWAY_KEYS": f"{KEY}=free:alice",
            "REDIS_URL": redis.url,
            "GATEWAY_FILES_DIR": str(tmp_path / "files"),  # shared: one machine stands for S3
            "GATEWAY_BATCH_CONCURRENCY": str(IN_FLIGHT),
            "GATEWAY_BATCH_CLAIM_IDLE_MS": "1000",
            "GATEWAY_BATCH_HEARTBEAT_TTL_S": "2",
        }
        self.running: list[Served] = []

    def start(self) -> Served:
        argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(self._tmp)]
        argv += ["--port", str(free_port()), "--workers", "1"]
        served = Served(argv, self._env, self._tmp)
        self.running.append(served)
        return served

    def kill(self, served: Served) -> None:
        served.process.send_signal(signal.SIGKILL)
        served.process.wait(timeout=10)


@pytest.fixture
def replicas(tmp_path: Path, upstream: MockUpstream, redis: RedisServer) -> Iterator[Replicas]:
    routes = routes_doc(upstream.base_url, first_byte_timeout_s=5)
    routes["models"]["paced"] = {**routes["models"]["ok"], "model": "mock/slowfirst-0.15"}
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    tiers = tiers_doc({"free": {"routes": {**DEFAULT_ROUTES, "text": ["paced"]}}})
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    found = Replicas(tmp_path, redis)
    yield found
    for served in found.running:
        served.stop()


def start_batch(served: Served) -> tuple[openai.OpenAI, str]:
    api = openai.OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0)
    lines = [chat_line(f"line-{n}") for n in range(LINES)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return api, batch.id


def answered_midway(api: openai.OpenAI, batch_id: str) -> None:
    def some_done() -> bool:
        counts = api.batches.retrieve(batch_id).request_counts
        return counts is not None and LINES // 4 <= counts.completed < LINES // 2

    wait_for(some_done, "a quarter of the lines")


def check_exactly_once(api: openai.OpenAI, batch: Any, upstream: MockUpstream) -> None:
    answered: list[dict[str, Any]] = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            answered += [json.loads(line) for line in api.files.content(file_id).text.splitlines()]
    by_id = Counter(item["custom_id"] for item in answered)
    assert sorted(by_id) == sorted(f"line-{n}" for n in range(LINES))
    assert set(by_id.values()) == {1}, "a custom_id answered twice"
    sent = Counter(
        r.json["messages"][0]["content"].removeprefix("hello ") for r in upstream.requests if r.json
    )
    assert max(sent.values()) == 1, "a line sent upstream twice"
    interrupted = [item for item in answered if item["error"] is not None]
    assert all(item["error"]["code"] == "line_interrupted" for item in interrupted)
    assert len(interrupted) <= IN_FLIGHT  # only what the killed replica had in flight
    for item in answered:
        if item["error"] is None:
            assert item["response"]["status_code"] == 200
            assert sent[item["custom_id"]] == 1
    counts = batch.request_counts
    assert (counts.total, counts.completed + counts.failed) == (LINES, LINES)


def test_a_replica_killed_mid_batch_loses_nothing_and_repeats_nothing(
    replicas: Replicas, upstream: MockUpstream
) -> None:
    first, second = replicas.start(), replicas.start()
    api, batch_id = start_batch(first)
    answered_midway(api, batch_id)
    replicas.kill(first)
    survivor = openai.OpenAI(base_url=second.url + "/v1", api_key=KEY, max_retries=0)
    done = finished(survivor, batch_id)
    assert done.status == "completed"
    check_exactly_once(survivor, done, upstream)


def test_a_batch_continues_after_every_replica_restarts(
    replicas: Replicas, upstream: MockUpstream
) -> None:
    only = replicas.start()
    api, batch_id = start_batch(only)
    answered_midway(api, batch_id)
    replicas.kill(only)
    time.sleep(0.5)
    restarted = replicas.start()
    fresh = openai.OpenAI(base_url=restarted.url + "/v1", api_key=KEY, max_retries=0)
    done = finished(fresh, batch_id)
    assert done.status == "completed"
    check_exactly_once(fresh, done, upstream)
