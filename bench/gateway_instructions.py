"""The gateway's instructions per chat request for two source trees, counted by callgrind.

    python bench/gateway_instructions.py --a /path/to/before --b /path/to/after [--rounds 2]

CPU time per request is noise on a shared machine; the instructions the gateway process runs
are not. Each tree's gateway runs under ``valgrind --tool=callgrind`` with instrumentation off
while it starts and warms up, then on for a fixed number of JSON and of streamed chat requests
(``--connections`` keep-alive connections, each sending its share one after another) against the
nginx mock, Redis metering on. Prints per turn and kind the user-space instructions per request
(everything the process runs: the interpreter, uvloop, hiredis; work on a timer, such as the
rollup's every 2 s, runs more often per request as valgrind slows the process down).
``--b-env KEY=VALUE`` sets a variable for b's gateway only (a switch measured on one tree);
``--profile DIR`` keeps the callgrind output of each turn (``callgrind_annotate`` reads it).
``--keys plain,runtime,team``: ``plain`` the YAML key; ``runtime`` a run-time key with no limits
of its own (the issue's "key with none"); ``team`` a key in a team in an organization with every
level limit set (variants.py's ``TeamLevels``); ``limits`` a run-time key with its own rpm, tpm
and budgets and ``nolimits`` the same without them (variants.py's ``entities`` and
``entities_nolimits``: a flag and a tier quota set at run time in both); all but ``plain`` are
set up through the admin API each turn, Redis emptied before. ``--no-roller``: both trees'
gateways without the in-process usage roller (``GATEWAY_USAGE_ROLL=0``; trees older than that
variable run it anyway): the roller runs every 2 s of wall time, so under valgrind its runs fall
on few requests, vary from turn to turn by up to ~100k instructions per request, and weigh more
than at full speed. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
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
from aio import run_loop
from http_client import Target, measure_ttfb
from procs import ProcessGroup, free_port, leaf_processes, wait_for_port
from services import (
    CHAT_PATH,
    CONFIG_DIR,
    TIER,
    Mocks,
    RunningGateway,
    chat_body,
    load_machine,
    start_mocks,
)
from variants import Entities, TeamLevels

KINDS = (("chat", "bench-json", False), ("stream", "bench-sse", True))
KEYS = ("plain", "runtime", "team", "limits", "nolimits")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="the 'before' source tree")
    parser.add_argument("--b", type=Path, required=True, help="the 'after' source tree")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--requests", type=int, default=400, help="per kind and turn")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--keys", default="plain", help=f"{', '.join(KEYS)} (comma-separated)")
    parser.add_argument(
        "--b-env", action="append", default=[], help="KEY=VALUE for b's gateway only"
    )
    parser.add_argument("--no-roller", action="store_true", help="GATEWAY_USAGE_ROLL=0 for both")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is missing")
    tools, layout = load_machine()
    with (
        tempfile.TemporaryDirectory(prefix="gateway-ir-") as tmp,
        ProcessGroup(Path(tmp), layout.pin) as procs,
    ):
        mocks = start_mocks(procs, tools, layout)
        key = f"sk-bench-{secrets.token_hex(12)}"
        for turn in range(args.rounds):
            for kind in args.keys.split(","):
                if kind not in KEYS:
                    raise SystemExit(f"--keys: {kind!r} is not one of {', '.join(KEYS)}")
                for label, tree in (("a", args.a), ("b", args.b)):
                    name = f"{label}_{kind}_r{turn}"
                    out = (args.profile or Path(tmp)) / f"cg.{name}"
                    extra = dict(pair.split("=", 1) for pair in args.b_env) if label == "b" else {}
                    if args.no_roller:
                        extra = {"GATEWAY_USAGE_ROLL": "0", **extra}
                    levels = _setup(kind)
                    if levels:
                        extra = {**extra, "GATEWAY_ADMIN_TOKEN": levels.token}
                        redis.Redis.from_url(mocks.redis_url).flushall()
                    turn_args = (procs, mocks, key, valgrind, tree, name, out, args, extra, levels)
                    for line in measure(*turn_args):
                        print(line, flush=True)
    return 0


def _setup(kind: str) -> TeamLevels | Entities | None:
    """What makes ``kind``'s key through the admin API (None: the YAML key)."""
    token = secrets.token_hex(16)
    if kind in ("runtime", "team"):
        return TeamLevels(token, team=kind == "team")
    if kind in ("limits", "nolimits"):
        return Entities(token, limits=kind == "limits")
    return None


def measure(
    procs: ProcessGroup,
    mocks: Mocks,
    key: str,
    valgrind: str,
    tree: Path,
    name: str,
    out: Path,
    args: argparse.Namespace,
    extra_env: dict[str, str],
    levels: TeamLevels | Entities | None = None,
) -> list[str]:
    """One tree's turn: a ``gateway_instructions ...`` line per kind of request."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(mocks.upstream_env())
    env.update(
        PYTHONPATH=str(tree.resolve()),
        REDIS_URL=mocks.redis_url,
        GATEWAY_KEYS=f"{key}={TIER}:bench-user",
        GATEWAY_LOG_LEVEL="WARNING",
    )
    env.update(extra_env)
    # -P: without it ``-m`` puts the working directory first on the path, and a run from a
    # source tree would measure that tree's code for both a and b
    argv = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            sys.executable, "-P", "-m", "gateway", "serve", "--config-dir", str(CONFIG_DIR),
            "--port", str(port), "--workers", "1"]  # fmt: skip
    proc = procs.start(f"gateway_{name}", argv, cpus=None, env=env)
    lines = []
    try:
        wait_for_port(port, proc, timeout_s=120)
        if levels:
            key = levels.setup(RunningGateway(proc, port, 1, key))
        target = Target("127.0.0.1", port, CHAT_PATH, key)
        pid = leaf_processes(proc.pid)[0]
        for kind, model, stream in KINDS:
            _drive(target, chat_body(model, stream), 50, stream, args.connections)  # warm up
            _control(pid, "-i", "on")
            before = _instructions(pid)
            errors = _drive(target, chat_body(model, stream), args.requests, stream,
                            args.connections)  # fmt: skip
            after = _instructions(pid)
            _control(pid, "-i", "off")
            lines.append(
                f"gateway_instructions turn={name} kind={kind} requests={args.requests} "
                f"errors={errors} per_request={(after - before) / args.requests:.0f}"
            )
        _control(pid, "-d")
        time.sleep(1)
    finally:
        procs.stop(proc)
    return lines


def _drive(target: Target, body: bytes, count: int, stream: bool, connections: int) -> int:
    """``count`` requests over ``connections`` connections; the errors."""

    async def run() -> int:
        shares = [count // connections + (i < count % connections) for i in range(connections)]
        results = await asyncio.gather(
            *(measure_ttfb(target, body, share, stream) for share in shares if share)
        )
        return sum(result.errors for result in results)

    return run_loop(run())


def _control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], capture_output=True, check=True)


def _instructions(pid: int) -> int:
    """Instructions callgrind counted so far in the process (all threads)."""
    shown = subprocess.run(
        ["callgrind_control", "-e", str(pid)], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(count.replace(",", "")) for count in re.findall(r"Th \d+\s+([\d,]+)", shown))


if __name__ == "__main__":
    sys.exit(main())
