"""``allowance.shapes``: a plan's level checks as one shape per level, worked out once for the
same checks at the same positions (a plan is rebuilt every second)."""

from __future__ import annotations

from gateway.metering import allowance
from gateway.metering.types import Check
from gateway.store.port import Counter

KINDS = frozenset({"team.minute.requests", "team.day.usd", "org.day.usd"})


def _checks(limit: int, minute: int = 1) -> list[Check]:
    return [
        Check("user.requests", Counter("gw:{u}:d", "req", 1, 10)),
        Check("team.minute.requests", Counter(f"gw:{{tm:ml}}:min:{minute}", "req", 1, limit)),
        Check("team.day.usd", Counter("gw:{tm:ml}:d:1", "usd", 5, 10**9, ttl_s=90_000)),
        Check("org.day.usd", Counter("gw:{o:acme}:d:1", "usd", 5, 10**9, ttl_s=90_000)),
    ]


def test_the_same_checks_give_the_same_shapes_and_a_change_gives_new_ones() -> None:
    first = allowance.shapes(_checks(100), KINDS)
    assert [shape.name for shape in first] == [("team", "gw:{tm:ml"), ("org", "gw:{o:acme")]
    assert allowance.shapes(_checks(100), KINDS) is first  # a later second's plan: the same
    assert [c[0] for c in first[0].counters] == [1, 2]  # positions in the plan's checks
    changed = allowance.shapes(_checks(200), KINDS)  # a limit changed
    assert changed is not first and changed[0].ident is not first[0].ident
    assert changed[0].counters[0][4] == 200
    assert changed[1].ident is first[1].ident  # the organization's counters are the same
    rolled = allowance.shapes(_checks(100, minute=2), KINDS)  # another minute's counter
    assert rolled[0].counters[0][1] == "gw:{tm:ml}:min:2"
    moved = allowance.shapes([_checks(100)[0], *_checks(100)], KINDS)  # other positions
    assert [c[0] for c in moved[0].counters] == [2, 3]
