"""Redis's instructions per chat request for two gateway trees, counted by callgrind.

    python bench/redis_instructions.py --a /path/to/before --b /path/to/after [--rounds 1]

CPU time per request is noise on a shared machine; the instructions Redis runs are not. Redis
runs under ``valgrind --tool=callgrind`` (about 50 times slower, so the load is Redis-bound and
its req/s say nothing about the gateway); each tree's gateway in turn (warmed up) takes the
measured chat_c16 load, Redis emptied before each. Prints per turn the user-space
instructions per request (the usage stream's XADDs count the requests) and the commands per
request, the ones run inside the scripts included. ``--keys plain,team``: also (or only) with
a key in a team in an organization with every level limit set (variants.py's ``TeamLevels``,
set up through the admin API each turn). ``--profile DIR`` keeps Redis's callgrind output
(``callgrind_annotate --inclusive=yes`` reads it; all turns together). Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="the 'before' source tree")
    parser.add_argument("--b", type=Path, required=True, help="the 'after' source tree")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--keys", default="plain", help="plain, team or plain,team")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is missing")
    tools, layout = load_machine()
    with (
        tempfile.TemporaryDirectory(prefix="gateway-redis-ir-") as tmp,
        ProcessGroup(Path(tmp), layout.pin) as procs,
    ):
        wrapper = Path(tmp) / "redis-under-callgrind"
        out = args.profile or tmp
        wrapper.write_text(
            f"#!/bin/sh\nexec {valgrind} --tool=callgrind --callgrind-out-file={out}/cg.%p "
            f'{tools["redis-server"]} "$@"\n'
        )
        wrapper.chmod(0o755)
        mocks = start_mocks(procs, {**tools, "redis-server": str(wrapper)}, layout)
        client = redis.Redis.from_url(mocks.redis_url)
        knobs = Knobs(tools["wrk"], args.duration, 0, 0, 0)
        key = f"sk-bench-{secrets.token_hex(12)}"
        bench = Bench(procs, layout, mocks, knobs, Report(), key, "native")
        for turn in range(args.rounds):
            for kind in args.keys.split(","):
                for label, tree in (("a", args.a), ("b", args.b)):
                    name = f"{label}_{kind}_r{turn}"
                    line = measure(bench, client, mocks.redis.pid, tree, name, team=kind == "team")
                    print(line, flush=True)
    return 0


def measure(
    bench: Bench, client: redis.Redis, pid: int, tree: Path, name: str, *, team: bool = False
) -> str:
    """One tree's turn: the ``redis_instructions ...`` line."""
    client.flushall()
    os.environ["PYTHONPATH"] = str(tree.resolve())  # the gateway process imports this tree
    key = bench.key
    if team:
        levels = TeamLevels(secrets.token_hex(16))
        spec = GatewaySpec(env={"GATEWAY_ADMIN_TOKEN": levels.token}, transport=bench.transport)
        gateway = start_gateway(bench.procs, bench.mocks, bench.layout, bench.key, spec)
    else:
        gateway = bench.start_gateway()
    try:
        if team:
            key = levels.setup(gateway)
            load = Load(f"{name}_warm", gateway.url(), 16, key=key)
            wrk_scenario(bench.report, Knobs(bench.knobs.wrk, 1, 0, 0, 0), load)
        time.sleep(SETTLED_S)  # (started warmed up)
        client.config_resetstat()
        before = _instructions(pid)
        load = Load(f"{name}_chat_c16", gateway.url(), 16, key=key)
        wrk_scenario(bench.report, bench.knobs, load)
        time.sleep(SETTLED_S)
        after = _instructions(pid)
        stats: dict[str, dict[str, float]] = client.info("commandstats")  # type: ignore[assignment]
    finally:
        bench.procs.stop(gateway.proc)
    requests = int(stats.get("cmdstat_xadd", {}).get("calls", 0))
    if not requests:
        return f"redis_instructions turn={name} tree={tree} requests=0"
    commands = " ".join(
        f"{key.removeprefix('cmdstat_')}={entry['calls'] / requests:.2f}"
        for key, entry in sorted(stats.items())
        if entry["calls"] / requests >= 0.05
    )
    return (
        f"redis_instructions turn={name} tree={tree} requests={requests} "
        f"per_request={(after - before) / requests:.0f} commands_per_request: {commands}"
    )


def _instructions(pid: int) -> int:
    """Instructions callgrind counted so far in the Redis process (all threads)."""
    shown = subprocess.run(
        ["callgrind_control", "-e", str(pid)], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(count.replace(",", "")) for count in re.findall(r"Th \d+\s+([\d,]+)", shown))


if __name__ == "__main__":
    sys.exit(main())
