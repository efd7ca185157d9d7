"""Smoke test of the benchmark harness: ``python bench/run.py --quick`` runs and reports.

No timing assertions: only that the documented lines are there, with no errors, and that the
JSON summary parses. (Starts nginx, redis-server, the slow mock and the gateway; ~15 s.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(
    r"^scenario=(?P<name>\S+) rps=(?P<rps>[\d.]+) p50_ms=(?P<p50>[\d.]+|nan) "
    r"p99_ms=(?P<p99>[\d.]+|nan) errors=(?P<errors>\d+)$"
)
EXPECTED = {
    "direct_chat_c1",
    "direct_chat_c16",
    "direct_stream_c16",
    "ttfb_direct",
    "chat_c1",
    "chat_c16",
    "stream_c16",
    "ttfb_gateway",
    "slow_direct",
    "slow_streams",
}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@pytest.fixture(scope="module")
def quick_run() -> str:
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_documented_scenario_ran_without_errors(quick_run: str) -> None:
    found = {m["name"]: m for m in map(LINE.match, quick_run.splitlines()) if m}
    assert found.keys() >= EXPECTED, quick_run
    for name in EXPECTED:
        assert found[name]["errors"] == "0", f"{name} had errors:\n{quick_run}"
        assert float(found[name]["rps"]) > 0, quick_run


def test_memory_lines_and_json_summary(quick_run: str) -> None:
    lines = quick_run.splitlines()
    assert any(line.startswith("memory ") and "per_stream_kib=" in line for line in lines)
    summary = json.loads(lines[lines.index("summary:") + 1])
    assert set(summary["scenarios"]) >= EXPECTED
    for entry in summary["targets"].values():
        assert {"target", "measured", "met"} <= entry.keys()
    assert summary["machine"]["cores"] >= 1
    assert summary["facts"]["metering"]["usage_records"] > 0


def test_the_metering_micro_benchmark_runs_every_store() -> None:
    done = subprocess.run(
        [sys.executable, "bench/meter_micro.py", "--requests", "160"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stores = re.findall(r"^meter store=(\w+) cpu_us_per_request=[\d.]+$", done.stdout, re.M)
    assert stores == [
        "pipelined",
        "pipelined_key_limits",
        "pipelined_team_levels",
        "redis_py",
        "memory",
    ], done.stdout
    redis_lines = re.findall(r"^meter_redis store=(\w+) redis_cpu_us=[\d.]+ ", done.stdout, re.M)
    assert redis_lines == [
        "pipelined",
        "pipelined_key_limits",
        "pipelined_team_levels",
        "redis_py",
    ], done.stdout


GATE = re.compile(
    r"^gate chat_c16 ratio=[\d.]+ stream_c16 ratio=[\d.]+ gateway_cpu_us=\d+ redis_cpu_us=\d+$",
    re.MULTILINE,
)


@pytest.mark.slow
def test_the_gate_prints_its_line() -> None:
    """``bench/run.py --gate`` runs the floor and the gateway in one run and prints one line."""
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--gate", "--duration", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert GATE.search(done.stdout), done.stdout
    for name in ("floor_chat_c16", "floor_stream_c16", "chat_c16", "stream_c16"):
        assert re.search(rf"^scenario={name} rps=[\d.]+ .* errors=0$", done.stdout, re.M), name
