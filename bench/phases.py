"""The benchmark's phases, in the order ``run.py`` runs them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mock_nginx
from aio import run_loop
from http_client import SlowPlan, Target, slow_streams
from procs import ProcessGroup, Started, leaf_processes
from report import Report, ScenarioResult, median, percentile
from scenarios import Knobs, Load, slow_scenario, ttfb_scenario, wrk_scenario
from services import (
    CHAT_PATH,
    GatewaySpec,
    Layout,
    Mocks,
    RunningGateway,
    chat_body,
    describe_cpus,
    metering_facts,
    scrape_metrics,
    start_floor,
    start_gateway,
)
from wrk_load import LoadSpec, run_wrk

TRANSPORTS = ("native", "aiohttp", "httpx")  # the gateway's upstream clients, fastest first
# a worker this busy relays with a queue: chunks wait behind others, whatever the relay's code
SATURATED_PCT = 85.0


@dataclass(frozen=True)
class Bench:
    procs: ProcessGroup
    layout: Layout
    mocks: Mocks
    knobs: Knobs
    report: Report
    key: str
    transport: str = "aiohttp"

    def start_gateway(self, workers: int = 1, log_level: str = "WARNING") -> RunningGateway:
        spec = GatewaySpec(workers, log_level, self.transport)
        gateway = start_gateway(self.procs, self.mocks, self.layout, self.key, spec)
        show_process(self.report, gateway.proc)
        warm_up(self.knobs, gateway)
        return gateway

    def watch(self, **servers: Sequence[int]) -> dict[str, Sequence[int]]:
        """Process groups whose CPU use each scenario reports: the mocks, Redis, ``servers``."""
        mocks = self.mocks
        return {
            "nginx": leaf_processes(mocks.nginx.pid),
            "redis": [mocks.redis.pid],
            "slow_upstream": [mocks.slow.pid],
            **servers,
        }


def show_process(report: Report, proc: Started) -> None:
    report.add_process(proc.name, proc.pid, describe_cpus(proc))


def warm_up(knobs: Knobs, gateway: RunningGateway) -> None:
    """One unmeasured second of JSON and of streamed load (imports, pools, caches)."""
    for model, stream in (("bench-json", False), ("bench-sse", True)):
        spec = LoadSpec(gateway.url(), 16, 1, model, stream, gateway.key)
        run_wrk(knobs.wrk, spec)


def reference_phase(bench: Bench, quick: bool) -> None:
    """The mocks measured directly: what the gateway's numbers are compared with."""
    mocks, report, knobs = bench.mocks, bench.report, bench.knobs
    loads = [
        Load("direct_chat_c1", mocks.json_url(), 1),
        Load("direct_chat_c16", mocks.json_url(), 16),
        Load("direct_chat_c64", mocks.json_url(), 64),
        Load("direct_stream_c16", mocks.sse_url(), 16, "bench-sse", True),
    ]
    for load in loads:
        if not (quick and load.connections == 64):
            wrk_scenario(report, knobs, load, bench.watch())
    sse = Target("127.0.0.1", mocks.nginx_port, mock_nginx.SSE_PATH)
    ttfb_scenario(report, knobs, "ttfb_direct", sse, bench.watch())


def floor_phase(bench: Bench) -> None:
    """uvicorn + Starlette alone, and plus each upstream client the gateway can use (the
    transport is chosen by this measurement): the gateway's floor."""
    for index, transport in enumerate(TRANSPORTS):
        try:
            floor, port = start_floor(bench.procs, bench.mocks, bench.layout, transport)
        except RuntimeError as error:  # a reference only: the run goes on without it
            bench.report.note(f"floor: skipped, bench/floor_app.py did not start: {error}")
            return
        show_process(bench.report, floor)
        paths = [(f"floor_passthrough_{transport}_c16", "passthrough")]
        if index == 0:
            paths.insert(0, ("floor_static_c16", "static"))
        for name, path in paths:
            url = f"http://127.0.0.1:{port}/floor/{path}"
            run_wrk(bench.knobs.wrk, LoadSpec(url, 16, 1))  # warm-up
            watch = bench.watch(floor=[floor.pid])
            wrk_scenario(bench.report, bench.knobs, Load(name, url, 16), watch)
        bench.procs.stop(floor)


def gateway_phase(bench: Bench, gateway: RunningGateway, quick: bool) -> None:
    """Non-streamed and streamed chat through one worker, then what it left behind."""
    report, knobs, key = bench.report, bench.knobs, bench.key
    url = gateway.url()
    loads = [
        Load("chat_c1", url, 1, key=key),
        Load("chat_c16", url, 16, key=key),
        Load("chat_c64", url, 64, key=key),
        Load("stream_c16", url, 16, "bench-sse", True, key),
    ]
    watch = bench.watch(gateway=gateway.pids())
    for load in loads:
        if not (quick and load.connections == 64):
            wrk_scenario(report, knobs, load, watch)
    ttfb_scenario(report, knobs, "ttfb_gateway", gateway.target(), watch)
    report.add_memory(gateway_rss_after_load_kib=gateway.rss_kib())
    report.add_facts("metrics", **scrape_metrics(gateway))
    report.add_facts("metering", **metering_facts(bench.mocks.redis_url))


def slow_phase(bench: Bench, gateway: RunningGateway) -> None:
    """Many concurrent slow streams: directly (reference), then through one gateway worker."""
    report, knobs = bench.report, bench.knobs
    direct = Target("127.0.0.1", bench.mocks.slow_port, CHAT_PATH)
    slow_scenario(report, knobs, "slow_direct", direct, (), bench.watch())
    body = chat_body("bench-slow", True, bench_chunks=2)
    run_loop(slow_streams(gateway.target(), body, SlowPlan(20)))  # warm the slow path
    idle = gateway.rss_kib()
    pids = gateway.pids()
    watch = bench.watch(gateway=pids)
    outcome = slow_scenario(report, knobs, "slow_streams", gateway.target(), pids, watch)
    steady = outcome.stats.steady_delays_ms if outcome.stats else []
    extra = outcome.result.extra
    gateway_pct = extra["process_cpu_pct"].get("gateway", 0.0)
    chunks = extra["chunks_received"]
    report.add_facts(
        "relay",
        steady_chunks=len(steady),
        steady_p50_ms=median(steady),
        steady_p99_ms=percentile(steady, 99),
        gateway_cpu_pct=gateway_pct,
        # the worker's CPU per relayed chunk, its streams' set-up and ending included
        gateway_cpu_us_per_chunk=gateway_pct / 100 * extra["seconds"] / chunks * 1e6
        if chunks
        else float("nan"),
        harness_cpu_pct=extra["process_cpu_pct"].get("harness", 0.0),
    )
    if gateway_pct >= SATURATED_PCT:
        report.note(
            f"slow_streams: the gateway worker was {gateway_pct:.0f}% busy over the whole run; "
            "its relay delay is mostly chunks queueing for a saturated core (lower "
            "gateway_cpu_us_per_chunk, not the delay itself, is what a relay change moves)"
        )
    sampler = outcome.sampler
    if sampler is None or sampler.peak_open == 0:
        report.note("slow_streams: no stream was ever open; no memory figure")
        return
    report.add_memory(
        gateway_idle_rss_kib=idle,
        gateway_rss_streams_open_kib=sampler.rss_at_peak_kib,
        open_streams=sampler.peak_open,
        per_stream_kib=(sampler.rss_at_peak_kib - idle) / sampler.peak_open,
    )
    if sampler.peak_open < knobs.slow_streams:
        report.note(
            f"slow_streams: at most {sampler.peak_open} of {knobs.slow_streams} streams were "
            "open at once (the first ones ended before the last ones opened)"
        )


def logging_phase(bench: Bench) -> None:
    """The per-request access log's cost: the same load with GATEWAY_LOG_LEVEL=INFO."""
    gateway = bench.start_gateway(log_level="INFO")
    log_before = gateway.proc.log_path.stat().st_size
    load = Load("chat_c16_log_info", gateway.url(), 16, key=bench.key)
    result = wrk_scenario(bench.report, bench.knobs, load, bench.watch(gateway=gateway.pids()))
    log_bytes = gateway.proc.log_path.stat().st_size - log_before
    bench.procs.stop(gateway.proc)
    quiet = bench.report.get("chat_c16", "rps")
    requests = result.extra["requests"] or 1
    facts: dict[str, float] = {
        "info_rps": result.rps,
        "log_bytes_per_request": log_bytes / requests,
    }
    if quiet:
        facts["warning_rps"] = quiet
        facts["rps_cost_pct"] = 100.0 * (quiet - result.rps) / quiet
    bench.report.add_facts("logging", **facts)


def workers_phase(bench: Bench, workers: int) -> None:
    """N workers on N cores against one worker's chat_c16 (the load shares those cores here)."""
    report = bench.report
    if workers < 2:
        report.note(f"workers: skipped ({bench.layout.cores} core(s); needs 2 or more)")
        return
    gateway = bench.start_gateway(workers=workers)
    connections = 16 * workers
    name = f"chat_c{connections}_w{workers}"
    load = Load(name, gateway.url(), connections, key=bench.key)
    result = wrk_scenario(report, bench.knobs, load, bench.watch(gateway=gateway.pids()))
    report.add_memory(**{f"gateway_w{workers}_rss_kib": gateway.rss_kib()})
    bench.procs.stop(gateway.proc)
    single = report.get("chat_c16", "rps")
    scaling = result.rps / (workers * single) if single else None
    report.add_facts(
        "workers",
        n=workers,
        cores=bench.layout.cores,
        rps_1=single,
        rps_n=result.rps,
        scaling=scaling,
        shared_cores=workers >= bench.layout.cores,
    )
    if workers >= bench.layout.cores:
        report.note(
            f"workers: {workers} workers on {bench.layout.cores} cores share them with wrk, nginx "
            "and redis, so this understates what N dedicated cores would give"
        )


def gate_phase(bench: Bench) -> str:
    """The standing performance gate: the native pass-through floor and one gateway worker,
    chat_c16 and stream_c16 each, in one run; returns the ``gate ...`` line.

    The ratios compare like with like (same mock, same wrk, same CPU), so they hold across
    machines and loads far better than absolute req/s; the CPU figures are per request."""
    report, knobs, key = bench.report, bench.knobs, bench.key
    floor, port = start_floor(bench.procs, bench.mocks, bench.layout, TRANSPORTS[0])
    show_process(report, floor)
    floor_watch = bench.watch(floor=[floor.pid])
    floors = {}
    for name, path, model, stream in (
        ("floor_chat_c16", "passthrough", "bench-json", False),
        ("floor_stream_c16", "stream", "bench-sse", True),
    ):
        url = f"http://127.0.0.1:{port}/floor/{path}"
        run_wrk(knobs.wrk, LoadSpec(url, 16, 1, model, stream))  # warm-up
        floors[name] = wrk_scenario(report, knobs, Load(name, url, 16, model, stream), floor_watch)
    bench.procs.stop(floor)
    gateway = bench.start_gateway()
    watch = bench.watch(gateway=gateway.pids())
    chat = wrk_scenario(report, knobs, Load("chat_c16", gateway.url(), 16, key=key), watch)
    stream = wrk_scenario(
        report, knobs, Load("stream_c16", gateway.url(), 16, "bench-sse", True, key), watch
    )
    bench.procs.stop(gateway.proc)

    def ratio(result: ScenarioResult, floor_result: ScenarioResult) -> float:
        return result.rps / floor_result.rps if floor_result.rps else 0.0

    def cpu_us(result: ScenarioResult, process: str) -> float:
        pct = result.extra.get("process_cpu_pct", {}).get(process, 0.0)
        return 1e6 * pct / 100.0 / result.rps if result.rps else 0.0

    return (
        f"gate chat_c16 ratio={ratio(chat, floors['floor_chat_c16']):.3f} "
        f"stream_c16 ratio={ratio(stream, floors['floor_stream_c16']):.3f} "
        f"gateway_cpu_us={cpu_us(chat, 'gateway'):.0f} redis_cpu_us={cpu_us(chat, 'redis'):.0f}"
    )
