"""reserve.lua's arguments for a ``CounterLayout``'s counters, from a template made once.

``scripts.reserve_args`` formats every counter's line and amount on every call; the counters
of one plan differ only in their amounts, so the template holds the layout's arguments as
made once (the same string objects on every call, so a group of a plan's reservations sends
them once: ``scripts.grouped_reserve_args``) and ``str.format`` puts the amounts in (the same
bytes as ``scripts.reserve_args``: ``tests/store/test_reserve_template.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from gateway.store.port import Counter, CounterLayout, Lease
from gateway.store.redis import scripts


def reserve_args(
    counters: Sequence[Counter],
    override_key: str | None,
    lease: Lease | None,
    layout: CounterLayout | None,
    *,
    registry: bool,
) -> tuple[list[str], scripts.Args]:
    """``scripts.reserve_args``; from ``layout``'s template when it fits the call."""
    if layout is not None and lease is not None and counters:
        template = layout.prepared
        if type(template) is not ReserveTemplate:
            template = layout.prepared = ReserveTemplate.of(
                counters, override_key, registry, lease.ttl_s
            )
        if template.fits(counters, override_key, registry, lease.ttl_s):
            return template.filled(counters, lease)
    return scripts.reserve_args(counters, override_key, lease, registry=registry)


class ReserveTemplate:
    """``reserve_args``' KEYS and ARGV for one ``CounterLayout``, made once: all but the lease
    id and the amounts, which ``str.format`` takes from each counter (``{3[2]}``: the fourth
    counter's ``fixed``). A counter on a short line sends its ``fixed`` alone, so it holds
    while none of those has a ``flex``; ``fits`` checks it."""

    __slots__ = (
        "_amounts",
        "_args",
        "_counters",
        "_keys",
        "_lease_s",
        "_override_key",
        "_registry",
        "_short",
    )

    def __init__(
        self,
        names: list[str],
        args: scripts.Args,
        short: int,
        counters: int,
        override_key: str | None,
        registry: bool,
        lease_s: int,
    ) -> None:
        self._keys, self._args, self._short = names, args, short
        self._amounts = str(args[8])  # the amounts' template (``args`` holds it too, as made)
        self._counters, self._override_key, self._registry = counters, override_key, registry
        self._lease_s = lease_s

    @classmethod
    def of(
        cls, counters: Sequence[Counter], override_key: str | None, registry: bool, lease_s: int
    ) -> ReserveTemplate:
        """The template of ``counters`` (their amounts left out) with leases of ``lease_s``."""
        names, args = scripts.reserve_args(
            counters, override_key, Lease("", lease_s), registry=registry
        )
        last_full = scripts.last_full(counters)
        amounts = [f"{{{number}[2]}}/{{{number}[5]}}" for number in range(last_full)]
        amounts += [f"{{{number}[2]}}" for number in range(last_full, len(counters))]
        args[8] = ",".join(amounts)
        return cls(names, args, last_full, len(counters), override_key, registry, lease_s)

    def fits(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        registry: bool,
        lease_s: int,
    ) -> bool:
        """Whether ``counters`` (of its layout) and the rest are what it was made for."""
        return (
            len(counters) == self._counters
            and override_key == self._override_key
            and registry is self._registry
            and lease_s == self._lease_s
            and not any(map(_FLEX, counters[self._short :]))
        )

    def filled(self, counters: Sequence[Counter], lease: Lease) -> tuple[list[str], scripts.Args]:
        """``reserve_args``' answer for ``counters`` and ``lease``."""
        args = self._args.copy()
        args[7] = lease.id
        args[8] = self._amounts.format(*counters)
        return self._keys.copy(), args


_FLEX = itemgetter(5)  # a ``Counter``'s ``flex``, read in C for each counter ``fits`` looks at
