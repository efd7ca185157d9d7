"""Redis's commands per chat request, and its CPU per request split user/system, under load.

    python bench/redis_commands.py [--keys plain,team] [--duration 8]

Starts the mocks (a plain redis-server, no valgrind) and this tree's gateway, warms it up, then
runs chat_c16 with wrk and prints per turn Redis's user and system CPU per request (from /proc)
and, from ``INFO commandstats``, each command's calls and µs per request (the commands the
scripts run are counted inside EVALSHA's µs as well as on their own lines). The calls per
request are counts and stay meaningful on a loaded machine; the µs do not. The calls per
request of EVALSHA, HGETALL (one per reserve call) and SET (one per settle batch) show how many
reservations share a call and how many requests a settle batch holds. ``--keys team``: a key
in a team in an organization with every level limit set (variants.py's ``TeamLevels``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from phases import Bench
from procs import ProcessGroup
from report import Report
from scenarios import Knobs, Load, wrk_scenario
from services import GatewaySpec, load_machine, start_gateway, start_mocks
from variants import TeamLevels

SETTLED_S = 2.0  # after a load: its last settles are written
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--keys", default="plain", help="plain, team or plain,team")
    args = parser.parse_args(argv)
    tools, layout = load_machine()
    with (
        tempfile.TemporaryDirectory(prefix="gateway-redis-commands-") as tmp,
        ProcessGroup(Path(tmp), layout.pin) as procs,
    ):
        mocks = start_mocks(procs, tools, layout)
        client = redis.Redis.from_url(mocks.redis_url)
        knobs = Knobs(tools["wrk"], args.duration, 0, 0, 0)
        bench = Bench(procs, layout, mocks, knobs, Report(), f"sk-bench-{secrets.token_hex(12)}")
        for kind in args.keys.split(","):
            print(measure(bench, client, mocks.redis.pid, kind), flush=True)
    return 0


def measure(bench: Bench, client: redis.Redis, pid: int, kind: str) -> str:
    """One turn: the lines ``redis_commands ...`` and one per command."""
    client.flushall()
    key = bench.key
    warm = Knobs(bench.knobs.wrk, 1, 0, 0, 0)
    if kind == "team":
        levels = TeamLevels(secrets.token_hex(16))
        spec = GatewaySpec(env={"GATEWAY_ADMIN_TOKEN": levels.token}, transport=bench.transport)
        gateway = start_gateway(bench.procs, bench.mocks, bench.layout, bench.key, spec)
        key = levels.setup(gateway)
    else:
        gateway = bench.start_gateway()
    try:
        wrk_scenario(bench.report, warm, Load(f"{kind}_warm", gateway.url(), 16, key=key))
        time.sleep(SETTLED_S)
        client.config_resetstat()
        before = _cpu(pid)
        load = Load(f"{kind}_chat_c16", gateway.url(), 16, key=key)
        result = wrk_scenario(bench.report, bench.knobs, load)
        time.sleep(SETTLED_S)
        after = _cpu(pid)
        stats: dict[str, dict[str, float]] = client.info("commandstats")  # type: ignore[assignment]
    finally:
        bench.procs.stop(gateway.proc)
    requests = int(result.extra["requests"])
    if not requests:
        return f"redis_commands keys={kind} requests=0"
    user, system = ((b - a) * TICK_S * 1e6 / requests for a, b in zip(before, after, strict=True))
    lines = [
        f"redis_commands keys={kind} requests={requests} errors={result.errors} "
        f"redis_cpu_us_per_request user={user:.1f} system={system:.1f}"
    ]
    for name, entry in sorted(stats.items(), key=lambda item: -item[1]["usec"]):
        calls, usec = entry["calls"] / requests, entry["usec"] / requests
        lines.append(
            f"  {name.removeprefix('cmdstat_'):20} calls_per_request={calls:.3f} "
            f"us_per_request={usec:.2f}"
        )
    return "\n".join(lines)


def _cpu(pid: int) -> tuple[int, int]:
    """User and system clock ticks the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


if __name__ == "__main__":
    sys.exit(main())
