"""reserve.lua's arguments for a ``CounterLayout``'s counters, from a template made once.

``scripts.reserve_args`` formats every counter's line on every call; the counters of one
plan differ only in their amounts, so the template holds their text and ``str.format`` puts
the amounts in (the same bytes: ``tests/store/test_reserve_template.py``).
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
            template = layout.prepared = ReserveTemplate.of(counters, override_key, registry)
        if template.fits(counters, override_key, registry):
            return template.filled(counters, lease)
    return scripts.reserve_args(counters, override_key, lease, registry=registry)


class ReserveTemplate:
    """``reserve_args``' KEYS and ARGV for one ``CounterLayout``, made once: every line's
    text but its amounts, which ``str.format`` takes from each counter (``{3[2]}``: the fourth
    counter's ``fixed``). Holds while no counter after the last full line has a ``flex``
    (it would make that line full too); ``fits`` checks it."""

    __slots__ = (
        "_args",
        "_counters",
        "_full_lines",
        "_keys",
        "_override_key",
        "_registry",
        "_short",
        "_short_lines",
    )

    def __init__(
        self,
        names: list[str],
        args: scripts.Args,
        short: int,
        counters: int,
        override_key: str | None,
        registry: bool,
    ) -> None:
        self._keys, self._args, self._short = names, args, short
        # the templates of ARGV's full and short lines (``args`` holds them too, as made)
        self._full_lines, self._short_lines = str(args[5]), str(args[9])
        self._counters, self._override_key, self._registry = counters, override_key, registry

    @classmethod
    def of(
        cls, counters: Sequence[Counter], override_key: str | None, registry: bool
    ) -> ReserveTemplate:
        """The template of ``counters`` (their amounts left out)."""
        names, args = scripts.reserve_args(counters, override_key, Lease("", 0), registry=registry)
        position = {key: at for at, key in enumerate(dict.fromkeys(c.key for c in counters), 1)}
        full: list[str] = []
        short: list[str] = []
        last_full = 0  # as ``scripts.reserve_args`` finds it, whatever the amounts
        for number, counter in enumerate(counters, 1):
            if counter.limit_field or counter.cap_field or counter.cap != -1:
                last_full = number
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
        args[5], args[9] = "\n".join(full), "\n".join(short)
        return cls(names, args, last_full, len(counters), override_key, registry)

    def fits(self, counters: Sequence[Counter], override_key: str | None, registry: bool) -> bool:
        """Whether ``counters`` (of its layout) and the rest are what it was made for."""
        return (
            len(counters) == self._counters
            and override_key == self._override_key
            and registry is self._registry
            and not any(map(_FLEX, counters[self._short :]))
        )

    def filled(self, counters: Sequence[Counter], lease: Lease) -> tuple[list[str], scripts.Args]:
        """``reserve_args``' answer for ``counters`` and ``lease``."""
        args = self._args.copy()
        args[5] = self._full_lines.format(*counters)
        args[6], args[7] = lease
        args[9] = self._short_lines.format(*counters)
        return self._keys.copy(), args


_FLEX = itemgetter(5)  # a ``Counter``'s ``flex``, read in C for each counter ``fits`` looks at


def _braced(text: str) -> str:
    """``text`` as it reads in a ``str.format`` template."""
    return text.replace("{", "{{").replace("}", "}}")
