"""The values the per-request metrics add to: the scrape is the one prometheus_client writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from gateway.observe.metric_values import Unlocked
from gateway.observe.metrics import MULTIPROC_ENV, Metrics, render

CREATED = re.compile(rb"^.*_created\{?.*$\n", re.MULTILINE)  # when a child was made: differs


def through_values(m: Metrics) -> None:
    m.value(m.inflight).inc(1)
    m.value(m.inflight).inc(-1)
    m.value(m.open_streams).inc(1)
    m.value(m.requests, "chat.completions", "a", "free", "mock", "200").inc(1)
    m.value(m.request_duration, "chat.completions").observe(0.25)
    m.value(m.overhead, "chat.completions").observe(0.002)
    m.value(m.overhead, "chat.completions").observe(5.0)  # past the last bound: +Inf only
    m.value(m.circuit_state, "a").set(2.0)
    m.value(m.tokens, "input", "a", "mock", "free").inc(12)
    m.child(m.tokens, "input", "a", "mock", "free").inc(3)  # the child's own inc: same value
    m.child(m.request_duration, "chat.completions").observe(1.5)


def through_children(m: Metrics) -> None:
    m.inflight.inc(1)
    m.inflight.inc(-1)
    m.open_streams.inc(1)
    m.requests.labels("chat.completions", "a", "free", "mock", "200").inc(1)
    m.request_duration.labels("chat.completions").observe(0.25)
    m.overhead.labels("chat.completions").observe(0.002)
    m.overhead.labels("chat.completions").observe(5.0)
    m.circuit_state.labels("a").set(2.0)
    m.tokens.labels("input", "a", "mock", "free").inc(12)
    m.tokens.labels("input", "a", "mock", "free").inc(3)
    m.request_duration.labels("chat.completions").observe(1.5)


def test_one_process_values_are_unlocked_and_scraped_as_the_childrens_own() -> None:
    ours, theirs = Metrics(), Metrics()
    through_values(ours)
    through_children(theirs)
    assert isinstance(
        ours.value(ours.requests, "chat.completions", "a", "free", "mock", "200"), Unlocked
    )
    scraped = [CREATED.sub(b"", generate_latest(m.registry)) for m in (ours, theirs)]
    assert scraped[0] == scraped[1]
    assert (
        b'gateway_tokens_total{model="a",provider="mock",tier="free",type="input"} 15.0'
        in scraped[0]
    )


WORKER = """
from gateway.observe.metric_values import Unlocked
from gateway.observe.metrics import Metrics
m = Metrics()
value = m.value(m.requests, "chat.completions", "a", "free", "mock", "200")
value.inc(1)
m.value(m.request_duration, "chat.completions").observe(0.25)
print(isinstance(value, Unlocked))
"""


def test_multiprocess_values_keep_their_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's values are prometheus_client's own (written to its file): another process's
    scrape sees them."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    worker = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, check=True
    )
    assert worker.stdout.strip() == "False"
    body, _ = render(Metrics(multiprocess_dir=str(tmp_path)))
    assert b'gateway_requests_total{endpoint="chat.completions",model="a"' in body
    assert b'gateway_request_duration_seconds_count{endpoint="chat.completions"} 1.0' in body
