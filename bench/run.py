"""Benchmark the gateway against a near-zero-cost mock upstream; one entry point.

    python bench/run.py            # the full run (~10 s per load scenario)
    python bench/run.py --quick    # a few seconds of a subset (used by tests/test_bench_smoke.py)
    python bench/run.py --gate     # ~40 s: the performance gate, one ``gate ...`` line
    python bench/run.py --slow-only  # ~1 min: the slow streams alone (direct, then via the gateway)

Prints ``scenario=<name> rps=<n> p50_ms=<n> p99_ms=<n> errors=<n>`` per scenario, ``memory ...``
lines, other facts, then ``summary:`` and one JSON line with every target beside its measure.
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType

from phases import (
    TRANSPORTS,
    Bench,
    floor_phase,
    gate_phase,
    gateway_phase,
    logging_phase,
    reference_phase,
    show_process,
    slow_phase,
    workers_phase,
)
from procs import ProcessGroup
from report import Report
from scenarios import Knobs
from services import Layout, start_mocks
from setup_tools import ensure_binaries, ensure_gateway, raise_fd_limit
from targets import TARGETS

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the gateway (see bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="a ~1 s smoke run of a subset")
    parser.add_argument(
        "--gate",
        action="store_true",
        help="the performance gate: floor and gateway chat_c16/stream_c16 (~40 s, 5 s each)",
    )
    parser.add_argument(
        "--slow-only",
        action="store_true",
        help="only the slow streams: slow_direct, then slow_streams through a fresh worker",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk scenario (default 10)")
    parser.add_argument("--slow-streams", type=int, help="concurrent slow streams (2000)")
    parser.add_argument("--slow-seconds", type=float, help="length of each slow stream (8 s)")
    parser.add_argument("--ttfb-requests", type=int, help="sequential TTFB requests (2000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--transport", choices=TRANSPORTS, default="native")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--compare-litellm", action="store_true", help="also run LiteLLM")
    parser.add_argument("--keep-logs", type=Path, help="keep configs and logs in this directory")
    return parser.parse_args(argv)


def knobs_from(args: argparse.Namespace, wrk: str) -> Knobs:
    quick = args.quick

    def pick(value: float | None, full: float, short: float) -> float:
        return value if value is not None else (short if quick else full)

    return Knobs(
        wrk=wrk,
        duration_s=args.duration
        if args.duration is not None
        else (5 if args.gate else pick(None, 10, 1)),
        ttfb_requests=int(pick(args.ttfb_requests, 2000, 50)),
        slow_streams=int(pick(args.slow_streams, 2000, 200)),
        slow_seconds=pick(args.slow_seconds, 8, 1),
    )


def describe_machine(report: Report, layout: Layout) -> None:
    load1, load5, _ = os.getloadavg()
    report.machine.update(
        cores=layout.cores,
        python=platform.python_version(),
        kernel=platform.release(),
        pinning=layout.pin,
        cpus={"gateway": "0 (1 worker) / 0-N (N workers)", "wrk+client+mocks+redis": "1"}
        if layout.pin
        else "not pinned",
        loadavg_at_start=[round(load1, 2), round(load5, 2)],
    )
    report.add_facts(
        "machine",
        cores=layout.cores,
        python=platform.python_version(),
        pinning="gateway:cpu0,load+mocks+redis:cpu1" if layout.pin else "off",
        loadavg=f"{load1:.2f},{load5:.2f}",
    )


def run_all(args: argparse.Namespace, report: Report, procs: ProcessGroup, layout: Layout) -> None:
    tools = ensure_binaries(["nginx", "wrk", "redis-server", "taskset"])
    ensure_gateway(REPO)
    raise_fd_limit(65536)
    if layout.pin:
        os.sched_setaffinity(0, {1})  # this harness (the Python client) and wrk run on CPU 1
    describe_machine(report, layout)
    report.add_process(
        "harness(wrk,client)", os.getpid(), ",".join(map(str, sorted(os.sched_getaffinity(0))))
    )
    mocks = start_mocks(procs, tools, layout)
    for proc in (mocks.redis, mocks.nginx, mocks.slow):
        show_process(report, proc)
    bench = Bench(procs, layout, mocks, knobs_from(args, tools["wrk"]), report,
                  f"sk-bench-{secrets.token_hex(12)}", args.transport)  # fmt: skip
    if args.gate:
        print(gate_phase(bench), flush=True)
        return
    if args.slow_only:
        gateway = bench.start_gateway()
        slow_phase(bench, gateway)
        procs.stop(gateway.proc)
        return
    reference_phase(bench, args.quick)
    if not args.quick:
        floor_phase(bench)
    gateway = bench.start_gateway()
    gateway_phase(bench, gateway, args.quick)
    if not args.quick:  # a fresh worker, so idle and loaded RSS compare like with like
        procs.stop(gateway.proc)
        gateway = bench.start_gateway()
    slow_phase(bench, gateway)
    procs.stop(gateway.proc)
    if not args.quick:
        logging_phase(bench)
        workers_phase(bench, args.workers)
    if args.compare_litellm:
        from litellm_compare import litellm_phase

        litellm_phase(bench, REPO / "bench" / ".venv-litellm")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def workdir(args: argparse.Namespace) -> AbstractContextManager[str]:
    if args.keep_logs is None:
        return tempfile.TemporaryDirectory(prefix="gateway-bench-")
    args.keep_logs.mkdir(parents=True, exist_ok=True)
    return nullcontext(str(args.keep_logs.resolve()))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(signum, _interrupt)
    cores = os.cpu_count() or 1
    layout = Layout(cores, pin=cores >= 2 and not args.no_pin)
    report = Report()
    code = 0
    try:
        with workdir(args) as tmp, ProcessGroup(Path(tmp), layout.pin) as procs:
            run_all(args, report, procs, layout)
    except KeyboardInterrupt:
        print("interrupted: every started process was stopped", flush=True)
        code = 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"error: {error}", flush=True)
        code = 1
    if not args.gate:
        report.print_summary(TARGETS)
    return code


if __name__ == "__main__":
    sys.exit(main())
