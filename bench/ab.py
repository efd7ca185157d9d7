"""Two source trees of the gateway, A and B, on the chat and stream scenarios in one run.

    python bench/ab.py --a /path/to/before --b /path/to/after [--rounds 3] [--duration 10]

The mocks start once; gateways from A and B (each run from its tree through PYTHONPATH) take
turns, round after round, so drifting machine load hits both alike. Prints every scenario line,
then per scenario the median of A, of B, and B/A.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from phases import Bench
from procs import ProcessGroup
from report import Report, median
from scenarios import Knobs, Load, wrk_scenario
from services import load_machine, start_mocks

SCENARIOS = (("chat_c16", "bench-json", False), ("stream_c16", "bench-sse", True))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="the 'before' source tree")
    parser.add_argument("--b", type=Path, required=True, help="the 'after' source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    return parser.parse_args(argv)


def one_turn(bench: Bench, tree: Path, label: str, turn: int) -> dict[str, float]:
    os.environ["PYTHONPATH"] = str(tree.resolve())  # the gateway process imports this tree
    gateway = bench.start_gateway()
    rates = {}
    for name, model, stream in SCENARIOS:
        load = Load(f"{label}_{name}_r{turn}", gateway.url(), 16, model, stream, bench.key)
        rates[name] = wrk_scenario(bench.report, bench.knobs, load).rps
    bench.procs.stop(gateway.proc)
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools, layout = load_machine()
    report = Report()
    knobs = Knobs(tools["wrk"], args.duration, 0, 0, 0)
    seen: dict[str, dict[str, list[float]]] = {"a": {}, "b": {}}
    with (
        tempfile.TemporaryDirectory(prefix="gateway-ab-") as tmp,
        ProcessGroup(Path(tmp), layout.pin) as procs,
    ):
        mocks = start_mocks(procs, tools, layout)
        key = f"sk-bench-{secrets.token_hex(12)}"
        bench = Bench(procs, layout, mocks, knobs, report, key, "native")
        for turn in range(args.rounds):
            for label, tree in (("a", args.a), ("b", args.b)):
                for name, rps in one_turn(bench, tree, label, turn).items():
                    seen[label].setdefault(name, []).append(rps)
    for name, _, _ in SCENARIOS:
        a, b = median(seen["a"][name]), median(seen["b"][name])
        print(f"ab scenario={name} a_rps={a:.0f} b_rps={b:.0f} b_over_a={b / a:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
