"""settle.lua's arguments for a batch of settled chat requests, without I/O, N times (callgrind).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" bench/settle_work.py plain 14 200

Builds ``BATCH`` settlements of one user's chat requests (``plain``: a key with no limits;
``team``: the key in a team in an organization with every level limit set, as
``meter_work.py``), then makes ``scripts.settle_call`` of them ``COUNT`` times: the gateway's
work per flush of the settle buffer, the settlements themselves left out. Run it with two
counts and divide the difference of the instructions by the difference of the counts times
``BATCH``: what one request's share of a settle call costs.
"""

from __future__ import annotations

import sys

from meter_micro import BENCH_ENV, work_request
from services import CONFIG_DIR

from gateway.config.load import load_config
from gateway.metering import Outcome, counters
from gateway.metering.plans import Plans
from gateway.metering.settle import settlement
from gateway.metering.types import Admission, Amounts
from gateway.store.port import SettleBatch
from gateway.store.redis import scripts

NOW = 1_796_000_000.0


def batches(kind: str, size: int) -> list[SettleBatch]:
    """``size`` settled requests of one user, as ``Meter.finish`` makes them."""
    config = load_config(str(CONFIG_DIR), BENCH_ENV)
    model = config.models["bench-json"]
    request = work_request(config, kind == "team")
    plans = Plans(counters.LimitCache(config))
    found = []
    for number in range(size):
        plan = plans.get(request, NOW)
        flex = counters.capped_output(plan.output_cap, request)
        checks = counters.fill(plan.checks, plan.fills, counters.estimate(request, flex), flex)
        granted = tuple(check.counter.fixed + check.counter.flex for check in checks)
        admission = Admission(
            headers={}, clamp_max_tokens=None, request=request, started=NOW, checks=checks,
            reserved=Amounts(*granted[:4]), granted=granted, lease=f"work.{number}",
            settle_layout=plan.settle_layout, lease_layout=plan.lease_layout,
        )  # fmt: skip
        outcome = Outcome(
            status=200, model=model.name, provider=model.upstream.name,
            upstream_model=model.upstream_model, price=model.price,
            prompt_tokens=12 + number % 7, completion_tokens=8 + number % 5, latency_ms=1.0,
        )  # fmt: skip
        found.append(settlement(admission, outcome, f"r{number}").batch)
    return found


def main(kind: str, size: int, count: int) -> None:
    made = batches(kind, size)
    for _ in range(count):
        scripts.settle_call(made, 1000, mark="gw:settled:x", stream=True, by_id=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
