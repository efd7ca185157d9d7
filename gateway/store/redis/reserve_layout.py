"""reserve.lua's group form: each plan's layout once per call, each reservation's amounts.

A group's reservations (those queued in one turn, ``reserve.py``) mostly share a few plans,
and a plan's counters differ only in their amounts: so the group's call sends each distinct
layout (keys, fields, limits, caps, times to live, lease seconds) once and the script reads
it once, and each reservation sends its lease id and amounts. A reservation sent alone takes
``scripts.reserve_args``' form instead, its layout and amounts in one argument.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.port import Counter, Lease
from gateway.store.redis import reserve_pack
from gateway.store.redis.scripts import Args


def layout_args(
    counters: Sequence[Counter],
    override_key: str | None,
    lease: Lease | None,
    *,
    registry: bool,
) -> tuple[list[str], Args]:
    """``scripts.reserve_args`` in reserve.lua's group form, for ``grouped_reserve_args``: its
    layout (what every reservation of the counters' plan sends alike), then the amounts."""
    names, form, data, fields = reserve_pack.layout(
        counters, override_key, lease, registry=registry
    )
    args: Args = [
        1,  # one reservation
        1,  # of one layout
        form,
        data,
        fields,
        "",  # its keys in KEYS as they are
        1,
        lease.id if lease and counters else "",
        reserve_pack.amounts(counters),
    ]
    return names, args


def grouped_reserve_args(calls: Sequence[tuple[list[str], Args]]) -> tuple[list[str], Args]:
    """KEYS and ARGV for reserve.lua holding several reservations (``layout_args``' each):
    every key once, the first reservation's first and in its order; each distinct layout
    once; per reservation where its keys are in them ('' for those that name the first one's
    keys, as one user's do), its layout's number, lease id and amounts."""
    first = calls[0][0]
    index = {name: at for at, name in enumerate(first, 1)}
    layouts: dict[tuple[str | int | bytes, str | int | bytes, str | int | bytes], int] = {}
    reservations: Args = []
    for names, one in calls:
        if names == first:
            reservations.append("")
        else:
            where = []
            for name in names:
                at = index.get(name)
                if at is None:
                    at = index[name] = len(index) + 1
                where.append(at)
            reservations.append(",".join(map(str, where)))
        layout = one[2], one[3], one[4]
        number = layouts.get(layout)
        if number is None:
            number = layouts[layout] = len(layouts) + 1
        reservations += (number, one[7], one[8])
    args: Args = [len(calls), len(layouts)]
    for layout in layouts:
        args += layout
    return list(index), args + reservations
