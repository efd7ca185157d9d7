"""reserve.lua's group form: each plan's layout once per call, each reservation's amounts.

A group's reservations (those queued in one turn, ``reserve.py``) mostly share a few plans,
and a plan's counters differ only in their amounts: so the group's call sends each distinct
layout (keys, fields, limits, caps, times to live, lease seconds) once and the script matches
it once, and each reservation sends its lease id and amounts. A reservation sent alone takes
``scripts.reserve_args``' form instead, its amounts in its lines (read once either way).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store import keys
from gateway.store.port import Counter, Lease
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
    position: dict[str, int] = {}  # key → its index (1-based)
    ttls: list[int] = []
    lines: list[str] = []
    amounts: list[str] = []
    last = last_full(counters)  # counters after it go on short lines
    # unpacked, not read by name: a team key has some forty counters
    for number, counter in enumerate(counters):
        key, field, fixed, limit, limit_field, flex, cap, cap_field, ttl_s, sliding = counter
        at = position.get(key)
        if at is None:
            at = position[key] = len(position) + 1
            ttls.append(0)
        ttls[at - 1] = -ttl_s if sliding else ttl_s  # the last counter of a key names it
        if number < last:
            lines.append(f"{at}\t{field}\t{limit}\t{limit_field}\t{cap}\t{cap_field}")
            amounts.append(f"{fixed}/{flex}")
        else:
            lines.append(f"{at}\t{field}\t{limit}")
            amounts.append(f"{fixed}/{flex}" if flex else str(fixed))
    all_keys = list(position)
    if override_key:
        all_keys.append(override_key)
    leased = lease is not None and bool(counters)
    if leased:
        group = keys.lease(counters[0].key)
        all_keys += (group, keys.lease_data(group))
        if registry:
            all_keys.append(keys.LEASE_REGISTRY)
    head = [len(position), 1 if override_key else 0, 1 if registry and leased else 0]
    head += [lease.ttl_s if lease else 0, *ttls]
    args: Args = [
        1,  # one reservation
        1,  # of one layout
        ",".join(map(str, head)),
        "\n".join(lines[:last]),
        "\n".join(lines[last:]),
        "",  # its keys in KEYS as they are
        1,
        lease.id if lease and counters else "",
        ",".join(amounts),
    ]
    return all_keys, args


def last_full(counters: Sequence[Counter]) -> int:
    """How many of ``counters`` reserve.lua gets on full lines: up to the last one with an
    override or a cap (those after it on short lines, which have none)."""
    last = 0
    for number, counter in enumerate(counters, 1):
        if counter.limit_field or counter.cap_field or counter.cap != -1:
            last = number
    return last


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
