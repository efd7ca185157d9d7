"""reserve.lua's arguments for a ``CounterLayout``'s counters, from a template made once.

``scripts.reserve_args`` and ``reserve_layout.layout_args`` format every counter's line on every
call; the counters of one plan differ only in their amounts, so the template holds their text
and ``str.format`` puts the amounts in (the same bytes: ``tests/store/test_reserve_template.py``).
Both of reserve.lua's forms: a reservation sent alone, its amounts in its lines; one in a group,
its layout (the same string objects on every call, sent once per group) and its amounts apart.
Which one is known only when the call is sent, so ``ReserveCall`` formats it then.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from gateway.store.port import Counter, CounterLayout, Lease
from gateway.store.redis import reserve_layout, scripts

Call = tuple[list[str], scripts.Args]  # KEYS and ARGV


def reserve_call(
    counters: Sequence[Counter],
    override_key: str | None,
    lease: Lease | None,
    layout: CounterLayout | None,
    *,
    registry: bool,
) -> ReserveCall:
    """The reservation's call; from ``layout``'s template when it fits."""
    template = None
    if layout is not None and lease is not None and counters:
        made = layout.prepared
        if type(made) is not ReserveTemplate:
            made = layout.prepared = ReserveTemplate.of(
                counters, override_key, registry, lease.ttl_s
            )
        if made.fits(counters, override_key, registry, lease.ttl_s):
            template = made
    return ReserveCall(counters, override_key, lease, registry, template)


class ReserveCall:
    """One reservation's KEYS and ARGV for reserve.lua, formatted when sent: alone, or in a
    group's form (``reserve_layout.grouped_reserve_args`` joins those)."""

    __slots__ = ("_counters", "_lease", "_override_key", "_registry", "_template")

    def __init__(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        lease: Lease | None,
        registry: bool,
        template: ReserveTemplate | None,
    ) -> None:
        self._counters, self._override_key, self._lease = counters, override_key, lease
        self._registry, self._template = registry, template

    def alone(self) -> Call:
        """``scripts.reserve_args``' answer."""
        if self._template is not None and self._lease is not None:
            return self._template.alone(self._counters, self._lease)
        return scripts.reserve_args(
            self._counters, self._override_key, self._lease, registry=self._registry
        )

    def in_group(self) -> Call:
        """``reserve_layout.layout_args``' answer."""
        if self._template is not None and self._lease is not None:
            return self._template.in_group(self._counters, self._lease)
        return reserve_layout.layout_args(
            self._counters, self._override_key, self._lease, registry=self._registry
        )


class ReserveTemplate:
    """``reserve_args``' and ``layout_args``' KEYS and ARGV for one ``CounterLayout``, made
    once: all but the lease id and the amounts, which ``str.format`` takes from each counter
    (``{3[2]}``: the fourth counter's ``fixed``). A counter on a short line has no ``flex``
    in either form, so it holds while none of those has one; ``fits`` checks it."""

    __slots__ = (
        "_alone",
        "_amounts",
        "_counters",
        "_full_lines",
        "_grouped",
        "_keys",
        "_lease_s",
        "_override_key",
        "_registry",
        "_short",
        "_short_lines",
    )

    def __init__(
        self,
        names: list[str],
        alone: scripts.Args,
        grouped: scripts.Args,
        short: int,
        counters: int,
        override_key: str | None,
        registry: bool,
        lease_s: int,
    ) -> None:
        self._keys, self._alone, self._grouped, self._short = names, alone, grouped, short
        # the templates of the lines (alone) and of the amounts (grouped), also in the args
        self._full_lines, self._short_lines = str(alone[5]), str(alone[9])
        self._amounts = str(grouped[8])
        self._counters, self._override_key, self._registry = counters, override_key, registry
        self._lease_s = lease_s

    @classmethod
    def of(
        cls, counters: Sequence[Counter], override_key: str | None, registry: bool, lease_s: int
    ) -> ReserveTemplate:
        """The template of ``counters`` (their amounts left out) with leases of ``lease_s``."""
        lease = Lease("", lease_s)
        names, alone = scripts.reserve_args(counters, override_key, lease, registry=registry)
        _, grouped = reserve_layout.layout_args(counters, override_key, lease, registry=registry)
        position = {key: at for at, key in enumerate(dict.fromkeys(c.key for c in counters), 1)}
        last_full = reserve_layout.last_full(counters)  # as both find it, whatever the amounts
        full: list[str] = []
        short: list[str] = []
        for number, counter in enumerate(counters):
            at, field = position[counter.key], _braced(counter.field)
            if number < last_full:
                limit_field, cap_field = _braced(counter.limit_field), _braced(counter.cap_field)
                full.append(
                    f"{at}\t{field}\t{{{number}[2]}}\t{{{number}[5]}}\t{counter.limit}"
                    f"\t{limit_field}\t{counter.cap}\t{cap_field}"
                )
            else:
                short.append(f"{at}\t{field}\t{{{number}[2]}}\t{counter.limit}")
        alone[5], alone[9] = "\n".join(full), "\n".join(short)
        amounts = [f"{{{number}[2]}}/{{{number}[5]}}" for number in range(last_full)]
        amounts += [f"{{{number}[2]}}" for number in range(last_full, len(counters))]
        grouped[8] = ",".join(amounts)
        return cls(names, alone, grouped, last_full, len(counters), override_key, registry, lease_s)

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

    def alone(self, counters: Sequence[Counter], lease: Lease) -> Call:
        """``scripts.reserve_args``' answer for ``counters`` and ``lease``."""
        args = self._alone.copy()
        args[5] = self._full_lines.format(*counters)
        args[6] = lease.id
        args[9] = self._short_lines.format(*counters)
        return self._keys.copy(), args

    def in_group(self, counters: Sequence[Counter], lease: Lease) -> Call:
        """``reserve_layout.layout_args``' answer for ``counters`` and ``lease``."""
        args = self._grouped.copy()
        args[7] = lease.id
        args[8] = self._amounts.format(*counters)
        return self._keys.copy(), args


_FLEX = itemgetter(5)  # a ``Counter``'s ``flex``, read in C for each counter ``fits`` looks at


def _braced(text: str) -> str:
    """``text`` as it reads in a ``str.format`` template."""
    return text.replace("{", "{{").replace("}", "}}")
