"""Multiprocess metrics: a dead worker's gauges leave the scrape; its counters stay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observe.metrics import MULTIPROC_ENV, Metrics, mark_worker_dead, render

WORKER = """
import os
from gateway.observe.metrics import Metrics
m = Metrics()
m.inflight.inc(); m.open_streams.inc(); m.usage_buffered.inc(3)
m.circuit_state.labels("flaky").set(2); m.cost_alert_active.labels("global").set(1)
m.requests.labels("chat.completions", "ok", "free", "mock", "200").inc()
print(os.getpid())
"""


def scrape() -> dict[str, float]:
    body, _ = render(Metrics())
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_a_dead_workers_gauges_are_dropped_and_its_counters_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    worker = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, check=True
    )
    before = scrape()
    assert before["gateway_inflight_requests"] == 1 and before["gateway_circuit_state"] == 2
    mark_worker_dead(int(worker.stdout))
    after = scrape()
    gauges = (
        "gateway_inflight_requests",
        "gateway_open_streams",
        "gateway_usage_buffered",
        "gateway_circuit_state",
        "gateway_cost_alert_active",
    )
    assert {name: after.get(name, 0) for name in gauges} == dict.fromkeys(gauges, 0)
    assert after["gateway_requests_total"] == 1
