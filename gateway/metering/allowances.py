"""Level allowances: an organization's or team's counters reserved ahead, per process.

A busy level's requests need not each check its thirteen counters in Redis: a process reserves
a chunk of them ahead (an *allowance*: the same requests, tokens and micro-USD in each of the
level's windows and slots of its ``max_parallel``, granted atomically against every counter and
held by a lease like any reservation) and admits locally while the chunk covers a request's
estimate and a slot. The user's, key's and tier's counters are still reserved per request.
The design in full, and how it is tested: docs/organizations.md, "Level allowances".

- **Exact, one-sided.** Only what fits in an allowance is admitted from it, and it fitted under
  every window's limit when granted: no level limit is exceeded by admissions (a request using
  more than its estimate may pass it by the excess, as without allowances).
- **Usage.** A request's actual usage is added to its allowances' ``folded`` sums at settle and
  written with one batch per allowance as the writer takes it (``allowance_writes.seal``): one
  write per level per flush, never later than the request's own record. What its estimate did
  not use (and its slot) comes back to the allowance locally. A reader of a level's counter
  sees its usage plus every open allowance's unused part: toward refusing.
- **End.** When a request does not fit, a window rolls, after ``MAX_AGE_S`` (or a quarter of the
  lease's time to live), after ``IDLE_S`` idle, when the level's limits change and at shutdown;
  its unused part goes back with the end of its leases (a dead process's: the lease sweeper).
- **Size and the bound.** Granted only to a level busy in this process (``HOT`` exact
  reservations within ``HOT_S``, or its allowance just ended while in use) with room: per
  measure the smaller of ``CHUNK`` requests' worth and 1/``SHARE`` of the least headroom, none
  under ``SMALLEST`` requests' worth (under ``SHARE`` x ``SMALLEST`` = 64 left, the level is
  reserved per request). Below half the last grant a top-up is asked in the background and the
  allowance is taken from down to empty meanwhile; one used down to that mark within ``GROW_S``
  of the ask before is followed by one twice its size, up to ``MAX_CHUNK`` (and 1/``SHARE`` of
  the headroom). A request is refused only by the store (its 429 names the level and window); a
  level may stop short of its limit by the unused part of other processes' open allowances, each
  under one and a half of its largest grant and given back within ``IDLE_S`` of its last use.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence

from gateway.metering import allowance_joint
from gateway.metering.allowance import (
    CHUNK,
    GROW_S,
    MAX_CHUNK,
    SHARE,
    SMALLEST,
    Allowance,
    Hold,
    Ident,
    LevelShape,
    Need,
    Use,
    grant_counters,
    grown,
    rooms,
    size,
    undone,
)
from gateway.metering.allowance_joint import Joint, Taken, joint_of, through
from gateway.metering.allowance_writes import returned
from gateway.metering.types import Amounts
from gateway.store import keys
from gateway.store.port import (
    Counter,
    CounterLayout,
    Decision,
    Lease,
    LeaseEnd,
    SettleBatch,
    Store,
    StoreError,
)

__all__ = [
    "CHUNK", "GROW_S", "HOT", "IDLE_S", "MAX_CHUNK", "SHARE", "SMALLEST", "Allowances", "Taken",
    "Use",
]  # fmt: skip

logger = logging.getLogger("gateway.metering")
Kept = Joint | tuple[Allowance, ...]
_new = tuple.__new__
HOT, HOT_S = 8, 10  # reservations of a level in one process within HOT_S s before one is asked
IDLE_S = 1.0
MAX_AGE_S = 60.0  # far below the lease's 900 s: the sweeper never takes an allowance in use


def _measured(joints: Sequence[Joint]) -> None:
    for joint in joints:
        if joint.open:
            joint.measure()


class Allowances:
    """This process's open allowances, one per level at most, and the grants under way.

    ``give_back`` queues a settle batch (an allowance's end) for the meter's writer."""

    def __init__(
        self,
        store: Store,
        lease_prefix: str,
        lease_ttl_s: int,
        give_back: Callable[[SettleBatch], None],
    ) -> None:
        self._store = store
        self._lease_prefix = lease_prefix
        self._lease_ttl_s = lease_ttl_s
        self._max_age_s = min(MAX_AGE_S, lease_ttl_s / 4)  # ended long before its lease
        self._give_back = give_back
        self._numbers = itertools.count()
        self._open: dict[tuple[str, str], Allowance] = {}
        self._asking: set[tuple[str, str]] = set()
        self._hot: dict[tuple[str, str], list[int]] = {}  # name → [HOT_S bucket, reservations]
        self._grant_calls: dict[tuple[Ident, Hold], tuple[list[Counter], CounterLayout]] = {}
        # ``take``'s allowances per level shapes (by their id), valid while ``_version`` (one
        # more per allowance opened or ended, or joint made) is the same: shapes, version,
        # oldest born, their joint or them
        self._joints: dict[int, tuple[Sequence[LevelShape], int, float, Kept]]
        self._joints = {}
        self._version = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._open)

    def take(
        self, shapes: Sequence[LevelShape], amounts: Amounts, now: float
    ) -> tuple[Taken, ...] | None:
        """The request's estimate and a slot in flight from the open allowance of each level,
        or None (nothing taken) when one of them has none, or one that has ended or does not
        cover it.

        What was found for ``shapes`` last time is kept (``_joints``, by the shapes' identity:
        a plan's, the same all minute) while no allowance was opened or ended and no joint
        made since (``_version``) and the oldest is young enough: most often their ``Joint``,
        and a request it covers with every member above its ``refill`` is taken through it
        (``allowance_joint``: once, not per member); else (an allowance in two plans' joints)
        the allowances, taken from one by one. Anything else (one missing, stale, short or
        low: a top-up to ask for) goes the whole way (``_take``)."""
        kept = self._joints.get(id(shapes))
        if (
            kept is None
            or kept[0] is not shapes
            or kept[1] != self._version
            or now - kept[2] > self._max_age_s
        ):
            return self._take(shapes, amounts, now)
        requests, tokens, audio, usd = amounts
        found = kept[3]
        if isinstance(found, Joint):
            slack = found.slack
            r, t, u, s = slack[0] - requests, slack[1] - tokens, slack[3] - usd, slack[4] - 1
            if r < 0 or t < 0 or u < 0 or s < 0 or not found.open:
                return self._take(shapes, amounts, now)
            slack[0], slack[1], slack[3], slack[4] = r, t, u, s
            found.used_at = now
            return through(found, amounts)
        need: Need = (requests, tokens, audio, usd, 1)
        uses: list[Use] = []
        for allowance in found:
            left, refill = allowance.left, allowance.refill
            r, t, u, s = left[0] - requests, left[1] - tokens, left[3] - usd, left[4] - 1
            if r < refill[0] or t < refill[1] or u < refill[3] or s < refill[4]:
                undone(uses)
                return self._take(shapes, amounts, now)
            left[0], left[1], left[3], left[4] = r, t, u, s
            allowance.used_at = now
            uses.append(_new(Use, (allowance, need)))
        return tuple(uses)

    def _take(
        self, shapes: Sequence[LevelShape], amounts: Amounts, now: float
    ) -> tuple[Taken, ...] | None:
        """``take``'s whole way: each level's allowance looked up and checked, a stale one
        ended, a short one ended, a low one topped up; on success what ``take`` keeps for
        ``shapes`` (``_joints``): the allowances' joint, made if none of them is in one or has
        usage queued, or the allowances alone if one is in another plan's joint (both go on
        alone: ``contested``). A joint's members are read and changed alone here: it is
        pushed first and measured after."""
        requests, tokens, audio, usd = amounts
        need: Need = (requests, tokens, audio, usd, 1)
        uses: list[Use] = []
        joints: list[Joint] = []
        get = self._open.get
        for shape in shapes:
            allowance = get(shape.name)
            if (
                allowance is None
                or allowance.shape.ident is not shape.ident
                or now - allowance.born > self._max_age_s
            ):
                self._stale(shapes, now)
                undone(uses)
                _measured(joints)
                return None
            joint = allowance.joint
            if joint is not None and joint not in joints:
                joint.push()
                joints.append(joint)
            # admitted if it fits in every measure; written out per index (``MEASURED``: an
            # index the level does not limit holds ``FREE``). ``refill`` (half the last chunk,
            # below which a top-up is asked for) is never negative: at or above it in every
            # measure, the request fits, tested once
            left = allowance.left
            r, t, u, s = left[0] - requests, left[1] - tokens, left[3] - usd, left[4] - 1
            refill = allowance.refill
            low = r < refill[0] or t < refill[1] or u < refill[3] or s < refill[4]
            if low and (r < 0 or t < 0 or u < 0 or s < 0):
                self._end(allowance)
                undone(uses)
                _measured(joints)
                return None
            left[0], left[1], left[3], left[4] = r, t, u, s
            allowance.used_at = now
            uses.append(_new(Use, (allowance, need)))
            if low and shape.name not in self._asking:  # topped up ahead
                hold = size(shape, need, allowance.room, grown(allowance, now))
                self._ask(shape, hold, allowance, now)
        _measured(joints)
        return self._kept(shapes, tuple([use.allowance for use in uses]), uses, amounts, now)

    def _kept(
        self,
        shapes: Sequence[LevelShape],
        members: tuple[Allowance, ...],
        uses: list[Use],
        amounts: Amounts,
        now: float,
    ) -> tuple[Taken, ...]:
        """What ``take`` keeps for ``shapes`` (``_take``'s), and the request's uses of it."""
        joint = members[0].joint if members else None
        if joint is None or joint.members != members:
            joint = None
            if members and all(
                a.joint is None and a.queued is None and not a.contested for a in members
            ):
                joint = joint_of(members, now)
                self._version += 1  # a plan's kept allowances may be members now
            else:
                for allowance in members:
                    if allowance.joint is not None:  # another plan's: both go on alone
                        allowance.joint.dissolve()
                        allowance.contested = True
        if len(self._joints) > 1_000:
            self._joints.clear()
        born = min([allowance.born for allowance in members], default=now)
        kept = members if joint is None else joint
        self._joints[id(shapes)] = (shapes, self._version, born, kept)  # holds ``shapes``
        if joint is None:
            return tuple(uses)
        return through(joint, amounts)

    def _stale(self, shapes: Sequence[LevelShape], now: float) -> None:
        """End the allowances of ``shapes`` that no longer fit their plan (a window rolled, a
        limit changed) or grew old, all at once. Their levels were busy: each stays hot, so
        the request's exact reservation asks for the next allowance at once rather than
        after ``HOT`` more (at a roll, some twenty exact team reservations before)."""
        bucket = int(now // HOT_S)
        for shape in shapes:
            allowance = self._open.get(shape.name)
            if allowance is not None and (
                allowance.shape.ident is not shape.ident or now - allowance.born > self._max_age_s
            ):
                self._end(allowance)
                self._hot[shape.name] = [bucket, HOT - 1]

    def reserved(
        self, shapes: Sequence[LevelShape], amounts: Amounts, decision: Decision, now: float
    ) -> None:
        """A request reserved its levels exactly (``decision``): ask for an allowance of each
        busy level without one, in the background."""
        if self._closed or not decision.ok:
            return
        bucket = int(now // HOT_S)
        for shape in shapes:
            name = shape.name
            if name in self._open or name in self._asking:
                continue
            hot = self._hot.get(name)
            if hot is None or hot[0] != bucket:
                if len(self._hot) > 10_000:
                    self._hot.clear()
                hot = self._hot[name] = [bucket, 0]
            hot[1] += 1
            if hot[1] < HOT:
                continue
            need: Need = (*amounts, 1)
            self._ask(shape, size(shape, need, rooms(shape, decision, False)), None, now)

    def _ask(
        self, shape: LevelShape, hold: Hold | None, into: Allowance | None, now: float
    ) -> None:
        """Ask for a chunk of ``hold`` in the background: a new allowance, or ``into``'s."""
        if hold is None or self._closed:
            return
        self._asking.add(shape.name)
        if into is not None:
            into.asked(now)
        task = asyncio.get_running_loop().create_task(self._grant(shape, hold, into, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _grant(
        self, shape: LevelShape, hold: Hold, into: Allowance | None, now: float
    ) -> None:
        lease = Lease(f"{self._lease_prefix}.a{next(self._numbers)}", self._lease_ttl_s)
        wanted, layout = self._grant_call(shape, hold)
        try:
            decision = await self._store.reserve(wanted, None, lease, layout)
        except StoreError as exc:  # it may have run: end its lease, which gives back its grants
            logger.debug("metering: an allowance was not granted: %s", exc)
            groups = dict.fromkeys(keys.lease(key) for _, key, *_ in shape.counters)
            self._give_back(SettleBatch((), leases=tuple(LeaseEnd(g, lease.id) for g in groups)))
            if into is not None:
                into.not_topped_up()
            return
        finally:
            self._asking.discard(shape.name)
        if not decision.ok:
            if into is not None:
                into.not_topped_up()
            return
        room = rooms(shape, decision, True)
        if into is not None and into.open and self._open.get(shape.name) is into:
            into.add(lease.id, hold, room)
            if into.joint is not None:  # its ``refill`` changed
                into.joint.measure()
            return
        allowance = Allowance(shape, [], [0] * 5, [0] * 5, [0] * 5, room, [0] * 5, now, now)
        allowance.add(lease.id, hold, room)
        if self._closed or shape.name in self._open:
            self._give_back(returned(allowance))
            return
        self._open[shape.name] = allowance
        self._version += 1

    def _grant_call(self, shape: LevelShape, hold: Hold) -> tuple[list[Counter], CounterLayout]:
        """A grant's counters and their layout: the same objects for the same level counters
        and chunk (a top-up most often asks for the chunk before it), so the store formats its
        call from a template made once (``CounterLayout``) rather than every counter's line."""
        key = shape.ident, hold
        found = self._grant_calls.get(key)
        if found is None:
            if len(self._grant_calls) > 1_000:
                self._grant_calls.clear()
            found = self._grant_calls[key] = (grant_counters(shape, hold), CounterLayout())
        return found

    def unused(self, uses: Sequence[Taken]) -> None:
        """A request refused after taking from allowances: its estimate comes back to them,
        or to the counters if one has ended meanwhile (its end left the estimate counted)."""
        if uses:
            plain, aggregates = allowance_joint.settled(uses, Amounts())
            if any(not use.allowance.open for use in plain):
                self._give_back(SettleBatch((), aggregates=aggregates))

    def push(self) -> None:
        """Every open allowance exact in itself (``Joint.push``)."""
        for opened in self._open.values():
            if opened.joint is not None:
                opened.joint.push()

    async def run(self, clock: Callable[[], float]) -> None:
        """``tend`` twice per ``IDLE_S``, until cancelled."""
        while True:
            await asyncio.sleep(IDLE_S / 2)
            try:
                self.tend(clock())
            except Exception:
                logger.exception("metering: ending allowances failed")

    def tend(self, now: float) -> None:
        """End the allowances idle for ``IDLE_S`` or older than ``MAX_AGE_S`` (an old one in
        use leaves its level hot, as in ``_stale``)."""
        for allowance in list(self._open.values()):
            joint = allowance.joint
            if joint is not None:  # its ``used_at`` may be the joint's
                joint.push()
            if now - allowance.used_at > IDLE_S:
                self._end(allowance)
            elif now - allowance.born > self._max_age_s:
                self._end(allowance)
                self._hot[allowance.shape.name] = [int(now // HOT_S), HOT - 1]

    async def aclose(self) -> None:
        """End every allowance and ask for none any more (shutdown)."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for allowance in list(self._open.values()):
            self._end(allowance)

    def _end(self, allowance: Allowance) -> None:
        self._version += 1
        if allowance.joint is not None:
            allowance.joint.dissolve()
        if self._open.get(allowance.shape.name) is allowance:
            del self._open[allowance.shape.name]
        self._give_back(returned(allowance))
