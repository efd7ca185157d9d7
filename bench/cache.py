"""A response-cache hit against the upstream round trip, every server in its own process.

    python bench/cache.py [--delays-ms 0,30] [--connections 1,16] [--duration 5]

The issue's target: "a cache hit is served at least 3x faster than the mock-upstream round trip
in the same run". Processes as in bench/run.py: the gateway (``gateway serve``, bench/config,
Redis store: the cache entries live in redis-server) on CPU 0; redis-server, the mock upstream
(bench/json_upstream.py: the fixed chat.completion JSON after ``--delays-ms``, a timer, so
concurrent requests wait in parallel) and wrk on CPU 1. An earlier version ran the mock and the
gateway inside this Python process, which made both slower in a way that has nothing to do with
the cache.

For each upstream delay (default 0 ms: the mock's own floor, and 30 ms: a fast hosted provider's
answer time, the realistic case) and each wrk connection count, three loads of ``--duration``:

- ``hit``: through the gateway with ``x-gateway-cache: ttl=300`` (after one request filled the
  entry, every request is a hit; the gateway's ``gateway_cache_requests_total{result="hit"}``
  is checked against wrk's count);
- ``bypass``: the same with ``x-gateway-cache: no-store``: the full round trip through the
  gateway to the mock and back (auth, metering, upstream call);
- ``direct``: wrk straight to the mock (no gateway).

Prints one ``scenario=`` line per load (rps, p50/p90/p99 ms), then per delay and connection
count ``cache ... p50_bypass_over_hit=... p50_direct_over_hit=... rps_hit_over_bypass=...``.
``check kind=... cache_hits=...`` shows the hit load was all hits (the gateway may count a few
more: requests still in flight when wrk stopped) and the others none. With a 0 ms mock the
direct round trip is a loopback exchange with a process that does nothing, cheaper than any
gateway answer, so ``direct_over_hit`` is far below 1 there and ``bypass_over_hit`` compares
the gateway's own work for a hit (auth, metering, a Redis read) with its work for a
pass-through; the target is about the realistic delay. A loaded machine shrinks every ratio.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from phases import show_process
from procs import ProcessGroup, free_port, wait_for_port
from report import Report
from services import (
    BENCH_DIR,
    GatewaySpec,
    Layout,
    RunningGateway,
    load_machine,
    start_gateway,
    start_mocks,
)
from wrk_load import LoadResult, LoadSpec, run_wrk

HIT = "x-gateway-cache: ttl=300"
BYPASS = "x-gateway-cache: no-store"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays-ms", default="0,30", help="mock upstream delays, comma-separated")
    parser.add_argument("--connections", default="1,16", help="wrk connections, comma-separated")
    parser.add_argument("--duration", type=float, default=5)
    return parser.parse_args(argv)


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def show(name: str, result: LoadResult) -> None:
    print(
        f"scenario={name} requests={result.requests} rps={result.rps:.1f} "
        f"p50_ms={result.p50_ms:.3f} p90_ms={result.p90_ms:.3f} p99_ms={result.p99_ms:.3f} "
        f"errors={result.errors}",
        flush=True,
    )


def measure(
    wrk: str, gateway: RunningGateway, direct_url: str, connections: int, duration: float
) -> dict[str, LoadResult]:
    """hit, bypass and direct at ``connections``, each after one unmeasured second."""
    loads = {
        "hit": LoadSpec(gateway.url(), connections, duration, key=gateway.key, header=HIT),
        "bypass": LoadSpec(gateway.url(), connections, duration, key=gateway.key, header=BYPASS),
        "direct": LoadSpec(direct_url, connections, duration),
    }
    results = {}
    for kind, spec in loads.items():
        run_wrk(wrk, LoadSpec(spec.url, spec.connections, 1, key=spec.key, header=spec.header))
        hits_before = cache_hits(gateway)
        results[kind] = run_wrk(wrk, spec)
        hits = cache_hits(gateway) - hits_before
        print(f"check kind={kind} wrk_requests={results[kind].requests} cache_hits={hits:.0f}")
    return results


def cache_hits(gateway: RunningGateway) -> float:
    """``gateway_cache_requests_total{result="hit"}`` summed over tiers."""
    with urllib.request.urlopen(gateway.url("/metrics"), timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("gateway_cache_requests_total{") and 'result="hit"' in line
    )


def one_delay(
    procs: ProcessGroup,
    tools: dict[str, str],
    layout: Layout,
    delay_ms: float,
    args: argparse.Namespace,
) -> None:
    """A fresh mock (at ``delay_ms``), Redis and gateway; every connection count against them."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "json_upstream.py"), "--port", str(port),
            "--delay-ms", str(delay_ms)]  # fmt: skip
    upstream = procs.start(f"json_upstream_{delay_ms:g}ms", argv, cpus=layout.load_cpus)
    wait_for_port(port, upstream)
    direct_url = f"http://127.0.0.1:{port}/v1/chat/completions"
    mocks = start_mocks(procs, tools, layout)
    key = f"sk-bench-{secrets.token_hex(12)}"
    spec = GatewaySpec(env={"BENCH_JSON_URL": f"http://127.0.0.1:{port}/v1"}, name="gateway_cache")
    gateway = start_gateway(procs, mocks, layout, key, spec)
    show_process(Report(), gateway.proc)
    for connections in [int(value) for value in numbers(args.connections)]:
        results = measure(tools["wrk"], gateway, direct_url, connections, args.duration)
        for kind, result in results.items():
            show(f"{kind}_c{connections}_delay{delay_ms:g}ms", result)
        hit, bypass, direct = results["hit"], results["bypass"], results["direct"]
        print(
            f"cache delay_ms={delay_ms:g} connections={connections} "
            f"hit_p50_ms={hit.p50_ms:.3f} bypass_p50_ms={bypass.p50_ms:.3f} "
            f"direct_p50_ms={direct.p50_ms:.3f} "
            f"p50_bypass_over_hit={bypass.p50_ms / hit.p50_ms:.2f} "
            f"p50_direct_over_hit={direct.p50_ms / hit.p50_ms:.2f} "
            f"rps_hit_over_bypass={hit.rps / bypass.rps:.2f} target>=3",
            flush=True,
        )
    for proc in (gateway.proc, mocks.nginx, mocks.slow, mocks.redis, upstream):
        procs.stop(proc)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools, layout = load_machine()
    print(f"machine cores={layout.cores} pinned={layout.pin} loadavg={os.getloadavg()[0]:.2f}")
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="gateway-cache-") as tmp,
        ProcessGroup(Path(tmp), layout.pin) as procs,
    ):
        for delay_ms in numbers(args.delays_ms):
            one_delay(procs, tools, layout, delay_ms, args)
    print(f"done seconds={time.monotonic() - started:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
