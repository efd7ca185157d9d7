"""The gateway's metering work for one chat request without I/O, run N times (for callgrind).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" bench/meter_work.py team 250

Per request (as ``Meter.admit`` and the settle): the second's plan and its fill, the reserve
script's arguments, the decision's bookkeeping (outage figures, rate-limit headers, reserved
amounts), the settlement and the settle script's arguments (a batch of one); ``plain`` is a key
with no limits, ``limits`` a run-time key with its own rpm, tpm and budgets
(``meter_micro.KEY_LIMITS``), ``team`` the plain key in a team in an organization with every
level limit set (``meter_micro.LEVELS``), ``allowance`` that team key with its levels served
from open allowances (``Meter.admit``'s local path: the allowances' take, the plan's other
checks, the usage folded into the allowances and their batch sealed into each flush). Run it
with two counts and divide the difference of the instructions by the difference of the counts:
what one request costs, without the interpreter's start (docs/organizations.md "What it costs").
"""

from __future__ import annotations

import sys
from operator import itemgetter
from typing import cast

from meter_micro import BENCH_ENV, KEY_LIMITS, work_request
from services import CONFIG_DIR

from gateway.config.load import load_config
from gateway.metering import Outcome, counters
from gateway.metering.allowance import Allowance
from gateway.metering.allowance_writes import seal
from gateway.metering.allowances import Allowances
from gateway.metering.last_known import LastKnown
from gateway.metering.limit_errors import block_headers
from gateway.metering.plans import Local, Plans
from gateway.metering.settle import settlement
from gateway.metering.types import Admission, Amounts
from gateway.store.port import Decision, Lease, Store
from gateway.store.redis import reserve_template, scripts

NOW = 1_796_000_000.0


def main(kind: str, count: int) -> None:
    config = load_config(str(CONFIG_DIR), BENCH_ENV)
    model = config.models["bench-json"]
    request = work_request(config, kind in ("team", "allowance"))
    if kind == "limits":
        request.key_limits = KEY_LIMITS
    outcome = Outcome(
        status=200, model=model.name, provider=model.upstream.name,
        upstream_model=model.upstream_model, price=model.price, prompt_tokens=12,
        completion_tokens=8, latency_ms=1.0,
    )  # fmt: skip
    plans, known = Plans(counters.LimitCache(config)), LastKnown()
    held = opened(plans.get(request, NOW).local) if kind == "allowance" else None
    for number in range(count):
        plan = plans.get(request, NOW)  # as ``Meter.admit``: the second's plan, then the fill
        flex = counters.capped_output(plan.output_cap, request)
        amounts = counters.estimate(request, flex)
        uses = held.take(plan.local.shapes, amounts, NOW) if held and plan.local else None
        if uses and plan.local:
            local = plan.local
            checks = counters.fill(local.checks, local.fills, amounts, flex)
            layouts = local.settle_layout, local.lease_layout, local.layout
        else:
            checks = counters.fill(plan.checks, plan.fills, amounts, flex)
            layouts = plan.settle_layout, plan.lease_layout, plan.layout
        lease = Lease(f"work.{number}", 900)
        wanted = list(map(itemgetter(1), checks))
        call = reserve_template.reserve_call(
            wanted, plan.override_key, lease, layouts[2], registry=True
        )
        call.alone()
        granted = tuple(c.fixed + c.flex for c in wanted)
        decision = Decision((0,) * len(wanted), tuple(c.limit for c in wanted), granted, None)
        known.record(plan.key, checks, decision)
        block = plan.header_block
        block, headers = block_headers(block, checks, decision, plan.windows, plan.reset)
        plan.header_block = block
        admission = Admission(
            headers=headers, clamp_max_tokens=None, request=request, started=NOW, checks=checks,
            reserved=Amounts(*granted[:4]), granted=granted, lease=lease.id,
            settle_layout=layouts[0], lease_layout=layouts[1], uses=uses or (),
        )  # fmt: skip
        item = settlement(admission, outcome, f"r{number}")
        if item.unqueued:  # as ``Meter.finish`` (its own batch carries the levels' usage),
            for unqueued in item.unqueued:  # then the buffer seals it as it leaves
                unqueued.queued = item.batch
            seal(item.unqueued)
        scripts.settle_call([item.batch], 1000, mark=None, stream=True, by_id=False)


def opened(local: Local | None) -> Allowances:
    """Allowances open for each level of ``local``, each far from running out."""
    assert local is not None
    held = Allowances(cast(Store, None), "work", 900, lambda batch: None)
    for shape in local.shapes:
        allowance = Allowance(shape, [], [0] * 5, [0] * 5, [0] * 5, [-1] * 5, [0] * 5, NOW, NOW)
        allowance.add("work.a0", (10**15,) * 5, [-1] * 5)
        held._open[shape.name] = allowance
    return held


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "team", int(sys.argv[2]) if len(sys.argv) > 2 else 250
    )
