"""The open allowances of a request's levels taken from and given back to as one (a joint).

Every request of one plan takes the same estimate from each of its levels' allowances and
gives back the same (``allowance.fold``), so while they stay together their common change is
kept once, in a ``Joint``, and not written into each allowance per request. What the joint
holds, for each member, is exact at every step:

- a member's ``left`` is its own ``left`` plus ``slack - base`` (what the joint's requests
  took and gave back since ``push``); ``slack`` is, per measure, the least of the members'
  ``left - refill``, so a request fits every member above its top-up mark exactly when it fits
  ``slack`` (the test ``Allowances.take`` makes per member, once);
- a member's ``folded`` is the joint's ``folded`` (the member's own stays 0 while it is in
  one: built only with none queued, and ``dissolve``d before anything folds into one alone);
  ``queued`` carries it and its seal writes it as each member's (``allowance_writes.seal``);
- a member's ``spent`` is its own plus the joint's ``spent`` (what the seals wrote since);
- a member's ``used_at`` is the later of its own and the joint's.

An allowance is in at most one open joint. Anything else that reads or changes a member
(a top-up, a request taken the whole way, a grant used up) ``push``es the joint first and
``measure``s it after; its end, or a member written to alone, ``dissolve``s it: its pending
change is given to each member, which goes on alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from gateway.metering import allowance
from gateway.metering.allowance import Allowance, Need, Use
from gateway.metering.types import Amounts
from gateway.store.port import Aggregate, SettleBatch

if TYPE_CHECKING:
    from gateway.metering.allowance_writes import Reader

_new = tuple.__new__


@dataclass(slots=True, eq=False)
class Joint:
    """Allowances (one per level of a plan) taken from and given back to as one."""

    members: tuple[Allowance, ...]
    slack: list[int]  # per index of ``Need``: the least of the members' ``left - refill``
    base: list[int]  # ``slack`` when the members' ``left`` were last written (``push``)
    folded: list[int]  # each member's usage folded since ``queued`` was sealed
    used_at: float
    # each member's usage written (sealed) since the last push: what its ``spent`` lacks
    spent: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0, 0, 0])
    topped: bool = False  # a member holds more than one grant (``used_up`` may end one)
    open: bool = True
    queued: SettleBatch | None = None  # the buffered batch ``seal`` fills in
    readers: tuple[Reader, ...] | None = None  # the members' groups joined (``seal``)
    # the last request's amounts and uses, given again to the next with the same (read only)
    last: tuple[tuple[int, ...], tuple[Through, ...]] = ((), ())

    def push(self) -> None:
        """Write the change since the last push into each member (``left``, ``spent``,
        ``used_at``)."""
        slack, base, written = self.slack, self.base, self.spent
        d0, d1 = slack[0] - base[0], slack[1] - base[1]
        d3, d4 = slack[3] - base[3], slack[4] - base[4]
        for member in self.members:
            left, spent = member.left, member.spent
            left[0] += d0
            left[1] += d1
            left[3] += d3
            left[4] += d4
            spent[0] += written[0]
            spent[1] += written[1]
            spent[3] += written[3]
            if member.used_at < self.used_at:
                member.used_at = self.used_at
        self.base = [*slack]
        self.spent = [0, 0, 0, 0, 0]

    def measure(self) -> None:
        """Push, then ``slack`` worked out from the members again (one's ``left`` or
        ``refill`` was changed alone)."""
        self.push()
        slack = [0, 0, 0, 0, 0]
        first = True
        for member in self.members:
            left, refill = member.left, member.refill
            for index in allowance.MEASURED:
                room = left[index] - refill[index]
                if first or room < slack[index]:
                    slack[index] = room
            first = False
        self.slack, self.base = slack, [*slack]
        self.topped = any(len(m.grants) - m.held_from > 1 for m in self.members)

    def dissolve(self) -> None:
        """The members go on alone, each given what the joint holds for it."""
        if not self.open:
            return
        self.push()
        self.open = False
        self.last = ((), ())  # its uses refer to it: no cycle left for the collector
        folded, queued = self.folded, self.queued
        for member in self.members:
            member.joint = None
            if queued is not None:  # its usage is written by ``queued`` as each member's
                own = member.folded
                own[0] += folded[0]
                own[1] += folded[1]
                own[3] += folded[3]
                member.queued = queued
        self.folded = [0, 0, 0, 0, 0]


class Through(NamedTuple):
    """What one admitted request took from one member of a ``Joint``: the same estimate from
    each (``Admission.uses`` holds one per member; ``fold`` reads the first)."""

    allowance: Allowance
    need: Need
    joint: Joint


Taken = Use | Through


def through(joint: Joint, amounts: Amounts) -> tuple[Through, ...]:
    """A request's uses of ``joint`` (the last request's when its amounts were the same)."""
    last = joint.last
    if last[0] == amounts:
        return last[1]
    requests, tokens, audio, usd = amounts
    need: Need = (requests, tokens, audio, usd, 1)
    uses = tuple([_new(Through, (member, need, joint)) for member in joint.members])
    joint.last = (amounts, uses)
    return uses


def joint_of(members: tuple[Allowance, ...], now: float) -> Joint:
    """A joint of ``members`` (none in a joint, none with usage queued)."""
    joint = Joint(members, [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], now)
    for member in members:
        member.joint = joint
    joint.measure()
    return joint


def apart(uses: Sequence[Taken]) -> tuple[list[Use], list[Joint]]:
    """``uses`` as one ``Use`` per allowance, for a step that changes each alone, and the open
    joints of those allowances, pushed: ``measure`` them after."""
    plain = [_new(Use, use[:2]) for use in uses]
    joints: list[Joint] = []
    for use in plain:
        joint = use.allowance.joint
        if joint is not None and joint not in joints:
            joint.push()
            joints.append(joint)
    return plain, joints


def fold(uses: Sequence[Taken], actual: Amounts) -> list[Allowance] | list[Joint]:
    """``allowance.fold`` for ``uses`` (an admission's): through their joint while it is
    open (the joint returned if it has no batch queued), else per allowance, each one's open
    joint dissolved first (it is written to alone)."""
    first = uses[0]
    if type(first) is Through:
        joint = first.joint
        if joint.open:  # the estimate back, the usage taken and folded, once for all members
            requests, tokens, _, usd = actual
            n0, n1, _, n3, n4 = first.need
            slack, folded = joint.slack, joint.folded
            slack[0] += n0 - requests
            slack[1] += n1 - tokens
            slack[3] += n3 - usd
            slack[4] += n4
            folded[0] += requests
            folded[1] += tokens
            folded[3] += usd
            return [joint] if joint.queued is None else []
    plain = [_new(Use, use[:2]) for use in uses]
    for use in plain:
        if use.allowance.joint is not None:
            use.allowance.joint.dissolve()
    return allowance.fold(plain, actual)


def settled(uses: Sequence[Taken], actual: Amounts) -> tuple[list[Use], tuple[Aggregate, ...]]:
    """``allowance.settled`` for ``uses``, through ``apart``: the uses per allowance and the
    writes."""
    plain, joints = apart(uses)
    found = allowance.settled(plain, actual)
    for joint in joints:
        if joint.open:
            joint.measure()
    return plain, found
