"""The scenario runners: wrk load, sequential TTFB, concurrent slow streams."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aio import run_loop
from cpu import cpu_usage
from http_client import SlowPlan, StreamStats, Target, measure_ttfb, slow_streams
from procs import rss_kib
from report import Report, ScenarioResult, median, percentile
from services import chat_body
from wrk_load import LoadSpec, run_wrk

MEAN_GAP_S = 0.075  # the slow upstream's mean gap between chunks (50-100 ms)
OTHERS_NOTE_PCT = 15.0
Watch = Mapping[str, Sequence[int]] | None  # process group name → pids, for CPU accounting


@dataclass(frozen=True)
class Knobs:
    """What every scenario needs from the command line."""

    wrk: str
    duration_s: float
    ttfb_requests: int
    slow_streams: int
    slow_seconds: float


@dataclass(frozen=True)
class Load:
    name: str
    url: str
    connections: int
    model: str = "bench-json"
    stream: bool = False
    key: str = ""


def wrk_scenario(report: Report, knobs: Knobs, load: Load, watch: Watch = None) -> ScenarioResult:
    """wrk against ``load``; ``watch`` names the process groups whose CPU use to report."""
    spec = LoadSpec(load.url, load.connections, knobs.duration_s, load.model, load.stream, load.key)
    with cpu_usage(watch or {}) as cpu:
        result = run_wrk(knobs.wrk, spec)
    extra = {
        "connections": load.connections,
        "requests": result.requests,
        "p90_ms": result.p90_ms,
        "max_ms": result.max_ms,
        "error_detail": result.error_detail,
        **cpu.as_dict(),
    }
    return _add(
        report,
        ScenarioResult(load.name, result.rps, result.p50_ms, result.p99_ms, result.errors, extra),
    )


def ttfb_scenario(
    report: Report, knobs: Knobs, name: str, target: Target, watch: Watch = None
) -> ScenarioResult:
    """Sequential streamed requests on one keep-alive connection (after 20 unmeasured)."""
    body = chat_body("bench-sse", True)
    run_loop(measure_ttfb(target, body, 20, True))
    with cpu_usage(watch or {}) as cpu:
        result = run_loop(measure_ttfb(target, body, knobs.ttfb_requests, True))
    extra = {
        "requests": len(result.ttfb_ms),
        "whole_stream_p50_ms": median(result.total_ms),
        "whole_stream_p99_ms": percentile(result.total_ms, 99),
        "last_error": result.last_error,
        **cpu.as_dict(),
    }
    rps = len(result.ttfb_ms) / result.seconds if result.seconds else 0.0
    ttfb = result.ttfb_ms
    return _add(
        report, ScenarioResult(name, rps, median(ttfb), percentile(ttfb, 99), result.errors, extra)
    )


@dataclass
class RssSampler:
    """Gateway RSS at the moment the most streams were open at once."""

    pids: Sequence[int]
    peak_open: int = 0
    rss_at_peak_kib: int = 0
    max_rss_kib: int = 0

    def sample(self, stats: StreamStats) -> None:
        rss = sum(rss_kib(pid) for pid in self.pids)
        self.max_rss_kib = max(self.max_rss_kib, rss)
        if stats.open_now > self.peak_open or (
            stats.open_now == self.peak_open and rss > self.rss_at_peak_kib
        ):
            self.peak_open, self.rss_at_peak_kib = stats.open_now, rss


@dataclass
class SlowOutcome:
    result: ScenarioResult
    sampler: RssSampler | None = None
    stats: StreamStats | None = field(default=None, repr=False)


def slow_scenario(
    report: Report, knobs: Knobs, name: str, target: Target, pids: Sequence[int], watch: Watch
) -> SlowOutcome:
    """``knobs.slow_streams`` concurrent streams of ~``slow_seconds`` each; relay delay per chunk.

    rps is completed streams per second of the whole run; p50/p99 are chunk relay delays (the
    time the chunk reached the client's socket, the kernel's stamp, minus the upstream's
    ``ts``); ``client_lag_*`` how long the client itself took to read them (not included).
    ``pids`` (the gateway's, or none) have their RSS sampled while the streams are open.
    """
    chunks = max(1, round(knobs.slow_seconds / MEAN_GAP_S))
    # the slow upstream reports one completion token per content chunk: max_tokens must allow
    # them, or every stream's usage is clamped and logged as implausible at its end
    body = chat_body("bench-slow", True, bench_chunks=chunks, max_tokens=max(64, chunks))
    sampler = RssSampler(pids) if pids else None
    plan = SlowPlan(knobs.slow_streams, deadline_s=knobs.slow_seconds * 3 + 60)
    started = time.perf_counter()
    with cpu_usage(watch or {}) as cpu:
        stats = run_loop(slow_streams(target, body, plan, sampler.sample if sampler else None))
    seconds = time.perf_counter() - started
    delays = stats.delays_ms
    extra: dict[str, Any] = {
        "streams": knobs.slow_streams,
        "completed": stats.completed,
        "peak_open_streams": stats.peak_open,
        "chunks_per_stream": chunks + 3,
        "chunks_received": len(delays),
        "seconds": seconds,
        "delay_max_ms": max(delays, default=float("nan")),
        "steady_chunks": len(stats.steady_delays_ms),
        "steady_p50_ms": median(stats.steady_delays_ms),
        "steady_p99_ms": percentile(stats.steady_delays_ms, 99),
        # how long the bytes waited in the client's sockets for the client: excluded above
        "client_lag_p50_ms": median(stats.client_lags_ms),
        "client_lag_p99_ms": percentile(stats.client_lags_ms, 99),
        "chunks_read_with_a_later_one": stats.bounded,
        "last_error": stats.last_error,
        **cpu.as_dict(),
    }
    rps = stats.completed / seconds if seconds else 0.0
    result = ScenarioResult(name, rps, median(delays), percentile(delays, 99), stats.errors, extra)
    return SlowOutcome(_add(report, result), sampler, stats)


def _add(report: Report, result: ScenarioResult) -> ScenarioResult:
    """Report ``result``; note when other processes took a real share of the CPUs meanwhile."""
    report.add(result)
    others = result.extra.get("others_cpu_pct", 0.0)
    if others > OTHERS_NOTE_PCT:
        report.note(
            f"{result.name}: processes outside the benchmark used ~{others:.0f}% of a CPU "
            "meanwhile; its numbers are lower than a quiet machine would give"
        )
    return result
