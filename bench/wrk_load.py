"""Drive wrk with bench/wrk/chat.lua and read back its one-line JSON result."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk" / "chat.lua"
RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class LoadSpec:
    url: str
    connections: int
    duration_s: float
    model: str = "bench-json"
    stream: bool = False
    key: str = ""
    timeout_s: float = 10.0
    header: str = ""  # one extra request header, "name: value"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]


def run_wrk(wrk: str, spec: LoadSpec) -> LoadResult:
    """One wrk thread (the load generator is pinned to one CPU) with ``spec.connections``."""
    argv = [
        wrk,
        "-t1",
        f"-c{spec.connections}",
        f"-d{max(1, round(spec.duration_s))}s",
        f"--timeout={spec.timeout_s:g}s",
        "--latency",
        "-s",
        str(SCRIPT),
        spec.url,
    ]
    env = {
        **os.environ,
        "BENCH_KEY": spec.key,
        "BENCH_MODEL": spec.model,
        "BENCH_STREAM": "1" if spec.stream else "0",
        "BENCH_HEADER": spec.header,
    }
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk_output(done.stdout)


def parse_wrk_output(output: str) -> LoadResult:
    line = next((x for x in output.splitlines() if x.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no {RESULT_PREFIX.strip()} line:\n{output}")
    raw = json.loads(line[len(RESULT_PREFIX) :])
    seconds = raw["duration_us"] / 1e6
    detail = {name: int(raw[name]) for name in ("connect", "read", "write", "status", "timeout")}
    return LoadResult(
        requests=raw["requests"],
        seconds=seconds,
        rps=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=sum(detail.values()),
        error_detail=detail,
    )
