"""The meter: what the request pipeline calls before forwarding and after the answer.

``admit`` reserves in one store round trip (or raises); ``finish`` schedules the settle in the
background, so reconciling and writing the usage record add no latency. When the store is
down, ``Settings.on_store_error`` decides: "allow" admits without a reservation, "deny"
raises ``StoreUnavailable``; settles are buffered and flushed when the store returns.

A call the store refuses (``StoreRejected``) fails its request with a 400, health untouched.
Leases, the sweep and the other faults: docs/usage.md, "Faults". Off the request path: the quota
view and overrides (``users``), the sweep (``sweeper``), the store's health (``health``), the
settle writer (``buffer.py``); settled spend goes to the app's ``SpendObserver``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

from gateway.config.model import Config, Quota
from gateway.errors import InvalidRequest, StoreUnavailable
from gateway.metering import admit_checks, allowance_writes, counters, tier_shards
from gateway.metering.adopted import adopted_admission
from gateway.metering.allowances import Allowances, Taken
from gateway.metering.buffer import Flusher, UsageBuffer
from gateway.metering.health import StoreHealth
from gateway.metering.last_known import LastKnown
from gateway.metering.lease_sweeper import LeaseSweeper
from gateway.metering.limit_errors import exceeded
from gateway.metering.plans import Plans, ReservationPlan
from gateway.metering.record import UsageRecord
from gateway.metering.record_ids import RecordIds
from gateway.metering.settle import Settlement, settlement
from gateway.metering.spend import SpendObserver, spend_hook
from gateway.metering.types import Admission, Amounts, Check, MeterRequest, Outcome
from gateway.metering.user_quotas import UserQuotas
from gateway.store import keys
from gateway.store.port import (
    CounterLayout,
    Decision,
    Lease,
    LeaseEnd,
    SettleBatch,
    Store,
    StoreError,
    StoreRejected,
)

logger = logging.getLogger("gateway.metering")

RecordHook = Callable[[UsageRecord], None]
# Longer than any request should last: a stream's idle timeout bounds the gaps, not the total.
LEASE_TTL_S = 900
SWEEP_INTERVAL_S = 5.0
_COUNTER = operator.itemgetter(1)  # a ``Check``'s counter, read in C for each check
_AMOUNTS = len(counters.AMOUNT_KINDS)  # the grants that make up ``Amounts``
# per-request tuples with ``tuple.__new__``: a NamedTuple's own ``__new__`` is a Python function
_new = tuple.__new__
_NO_USES: tuple[Taken, ...] = ()
OUTAGE_NOTE = " (usage store unavailable: counted from what was left at the last reservation)"


class Meter:
    """Admit and finish on the request path; holds the user quotas, lease sweep and health."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        spend: SpendObserver | None = None,
        on_record: RecordHook | None = None,
        on_store_error: Callable[[], None] | None = None,
        lease_ttl_s: int = LEASE_TTL_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        """``spend`` sees the spend totals each settle returns (cost alerts); ``on_record``
        sees every usage record once settled (for token and cost metrics); ``on_store_error``
        is called on each store error (for an error counter)."""
        self._lease_ttl_s = lease_ttl_s
        self._lease_prefix = secrets.token_hex(6)
        self._lease_numbers = itertools.count()
        self._record_ids = RecordIds()
        self._sweep_task: asyncio.Task[None] | None = None
        self._config = config
        self._limits = counters.LimitCache(config)
        self._plans = Plans(self._limits)
        self._last_known = LastKnown()  # what a store outage may still admit
        self._full_shards = tier_shards.FullShards()
        self._store = store
        self._clock = clock
        self._spend = spend
        self._on_record = on_record
        self.health = StoreHealth(logger, on_error=on_store_error)
        self._buffer = UsageBuffer(config.settings.usage_buffer_max, logger)
        self._flusher = Flusher(self._buffer, store, self.health, spend_hook(spend), logger)
        self._flush_task: asyncio.Task[None] | None = None
        self._allowances = Allowances(store, self._lease_prefix, lease_ttl_s, self._returned)
        self._tend_task: asyncio.Task[None] | None = None
        self.users = UserQuotas(config, store, self.health, clock)
        self.sweeper = LeaseSweeper(store, sweep_interval_s)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background tasks (buffer flusher, lease sweeper)."""
        self._start_background()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Wait for pending settles, flush the buffer and send queued alerts (each up to
        ``timeout_s``), then stop the background tasks. The store is the caller's to close."""
        await self._allowances.aclose()  # their unused parts queued, written just below
        await _cancel(self._tend_task)
        await self.settled()
        await _cancel(self._flush_task)
        await _cancel(self._sweep_task)
        self._flush_task = self._sweep_task = self._tend_task = None
        if not await self._flusher.drain(timeout_s):
            logger.error("metering: %d usage records lost at shutdown", len(self._flusher))
        if self._spend is not None:
            await self._spend.aclose(timeout_s)

    async def settled(self) -> None:
        """Wait until every finished request is written (or held in the buffer while the
        store is unreachable)."""
        while len(self._flusher) and self.health.should_try():
            if not await self._flusher.flush_once():
                break
        self._allowances.push()  # and each allowance's own figures up to date

    # -- the request path --------------------------------------------------------------------

    async def admit(self, request: MeterRequest) -> Admission:
        """Reserve the request's usage; raise ``QuotaExceeded`` / ``BudgetExceeded`` when it
        does not fit, ``StoreUnavailable`` when the store is down and the policy is "deny"."""
        now = self._clock()
        plan = self._plans.get(request, now)
        limits, windows = plan.limits, plan.windows
        output = counters.capped_output(plan.output_cap, request)
        flex = 0 if request.byok else output
        amounts = counters.estimate(request, flex)
        local, uses = plan.local, _NO_USES
        if local is not None and request.generates_tokens and admit_checks.in_range(amounts, flex):
            uses = self._allowances.take(local.shapes, amounts, now) or ()
        if uses and local is not None:  # the levels' window counters covered locally
            checks = counters.fill(local.checks, local.fills, amounts, flex)
            layouts = local.settle_layout, local.lease_layout, local.layout
        else:
            checks = counters.fill(plan.checks, plan.fills, amounts, flex)
            if not admit_checks.in_range(amounts, flex):
                admit_checks.check_amounts(checks)
            layouts = plan.settle_layout, plan.lease_layout, plan.layout
        lease = self._lease()
        try:
            decision = await self._reserve(checks, plan.override_key, lease, layouts[2])
        except BaseException:
            self._allowances.unused(uses)
            raise
        if uses and decision is not None and not decision.ok:
            self._allowances.unused(uses)
            uses = ()
        elif not uses and local is not None and decision is not None and request.generates_tokens:
            self._allowances.reserved(local.shapes, amounts, decision, now)
        if (
            decision is not None
            and limits.tier_shards > 1
            and admit_checks.tier_refused(checks, decision)
        ):
            spilled = await self._spill_over(request, plan, checks, decision, lease)
            plan, checks, decision, lease = spilled
            layouts = plan.settle_layout, plan.lease_layout, plan.layout
        if decision is None:
            denial = self._last_known.take(checks)
            if denial is not None:
                self._allowances.unused(uses)
                raise exceeded(request, checks, denial, windows, now, OUTAGE_NOTE)
            return Admission(
                headers={},
                clamp_max_tokens=admit_checks.clamp(request, output),
                request=request,
                started=now,
                checks=checks,
                lease=lease.id,
                uses=uses,  # admitted unchecked, the levels within this process's allowance
            )
        self._last_known.record(local.source if uses and local else plan.key, checks, decision)
        if not decision.ok:
            raise exceeded(request, checks, decision, windows, now)
        granted = decision.granted
        reserved = (
            _new(Amounts, granted[:_AMOUNTS]) if len(granted) >= _AMOUNTS else Amounts(*granted)
        )
        if flex:
            flex = reserved.tokens - checks[counters.TOKENS_INDEX].counter.fixed
        elif request.byok:
            flex = output
        return Admission(  # positional, in the fields' order (once per request)
            plan.rate_limit_headers(checks, decision, windows),  # headers
            admit_checks.clamp(request, flex),  # clamp_max_tokens
            request,
            now,  # started
            reserved,
            checks,
            granted,
            lease.id,  # lease
            layouts[0],  # settle_layout
            layouts[1],  # lease_layout
            uses,
        )

    def _lease(self) -> Lease:
        lease = f"{self._lease_prefix}.{next(self._lease_numbers)}"
        return _new(Lease, (lease, self._lease_ttl_s))

    async def _spill_over(
        self,
        request: MeterRequest,
        plan: ReservationPlan,
        checks: tuple[Check, ...],
        decision: Decision,
        lease: Lease,
    ) -> tuple[ReservationPlan, tuple[Check, ...], Decision | None, Lease]:
        """The home shard of the tier budget refused: try the other shards not known to be
        full (``tier_shards``); the last answer stands."""
        tier, shards = request.tier.name, plan.limits.tier_shards
        home = tier_shards.home_shard(request.user, shards)
        self._full_shards.mark(tier, home)
        flex = 0 if request.byok else counters.output_tokens(plan.limits, request)
        amounts = counters.estimate(request, flex)
        for shard in self._full_shards.others(tier, home, shards):
            lease = self._lease()
            plan = self._plans.get(request, plan.windows.now, shard)
            checks = counters.fill(plan.checks, plan.fills, amounts, flex)
            answer = await self._reserve(checks, plan.override_key, lease, plan.layout)
            if answer is None or not admit_checks.tier_refused(checks, answer):
                return plan, checks, answer, lease
            decision = answer
            self._full_shards.mark(tier, shard)
        return plan, checks, decision, lease

    def finish(self, admission: Admission, outcome: Outcome) -> None:
        """Queue the settle (reconcile, record, aggregates); never raises.

        One writer task drains the queue, so under load many requests share one store call
        (group commit), and when the store is down the same queue is the outage buffer.
        """
        try:
            item = settlement(admission, outcome, self._record_ids())
            on_record = self._on_record
            if on_record is not None and item.record is not None:
                try:
                    on_record(item.record)
                except Exception:
                    logger.exception("metering: on_record hook failed")
            if item.unqueued:  # its own batch carries its levels' usage, and that of the
                # requests folded into the same allowances until it leaves the buffer
                batch = item.batch
                for unqueued in item.unqueued:
                    unqueued.queued = batch
                item.sealed = functools.partial(allowance_writes.seal, item.unqueued)
            self._buffer.add(item)
            if self._flush_task is None:
                self._start_background()
        except Exception:
            logger.exception("metering: settling %s failed", admission.request.request_id)

    def finish_elsewhere(
        self,
        request: MeterRequest,
        started: float,
        lease: str,
        granted: Sequence[int],
        outcome: Outcome,
    ) -> None:
        """Settle a reservation another worker made (a video job whose watcher died): its
        checks are worked out again as at ``started``. If its lease was swept meanwhile, the
        settle adds the grants back first, as for any late settle; never raises."""
        try:
            admission = adopted_admission(self._limits, request, started, lease, granted)
        except Exception:
            logger.exception("metering: settling %s failed", request.request_id)
            return
        self.finish(admission, outcome)

    def reject(self, request: MeterRequest, outcome: Outcome) -> None:
        """Record a request that a quota or budget refused; nothing was reserved for it."""
        admission = Admission(
            headers={}, clamp_max_tokens=None, request=request, started=self._clock()
        )
        self.finish(admission, outcome)

    async def _reserve(
        self, checks: tuple[Check, ...], override_key: str, lease: Lease, layout: CounterLayout
    ) -> Decision | None:
        health = self.health
        if not health.degraded or health.should_try():  # its common case read here, no call
            try:
                wanted = list(map(_COUNTER, checks))
                decision = await self._store.reserve(wanted, override_key, lease, layout)
            except StoreRejected as exc:
                self.health.recovered()  # it answered: the request is at fault, not the store
                logger.warning("metering: the store refused a reservation: %s", exc)
                raise InvalidRequest(
                    "The request's usage cannot be metered: an amount is out of range."
                ) from None
            except StoreError as exc:
                self.health.failed(exc)
                if self._config.settings.on_store_error == "deny":
                    self._give_back(checks, lease)
            else:
                if health.degraded:  # ``recovered`` does nothing otherwise
                    health.recovered()
                return decision
        if self._config.settings.on_store_error == "deny":
            raise StoreUnavailable("Usage metering is unavailable; try again shortly")
        return None

    def _returned(self, batch: SettleBatch) -> None:
        """An allowance's end (``allowances.returned``), queued for the writer."""
        self._buffer.add(Settlement(batch, (), None))
        if self._flush_task is None:
            self._start_background()

    def _give_back(self, checks: tuple[Check, ...], lease: Lease) -> None:
        """A refused request whose reserve timed out may still have run in the store (a
        stalled Redis runs it when resumed): queue the end of its lease, which gives back
        whatever the lease holds, if anything. The flusher sends it once the store answers;
        ending a lease that never existed does nothing."""
        groups = dict.fromkeys(keys.lease(check.counter.key) for check in checks)
        ends = tuple(LeaseEnd(group, lease.id) for group in groups)
        self._buffer.add(Settlement(SettleBatch((), leases=ends), (), None))
        self._start_background()

    # -- configuration -----------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A reloaded config's limits for the requests admitted from now on (alerts, the
        webhook and the buffer's size stay as started)."""
        self._config = self.users.config = config
        self._limits = counters.LimitCache(config, tier_quotas=self.users.tier_quotas)
        self._plans = Plans(self._limits)

    def set_tier_quotas(self, quotas: Mapping[tuple[str, str], Quota]) -> None:
        """Run-time tier quotas, (tier, capability) → the quota replacing the tier's own."""
        self.users.tier_quotas = quotas
        self._limits = counters.LimitCache(self._config, tier_quotas=quotas)
        self._plans = Plans(self._limits)

    # -- health figures (readiness, metrics) ---------------------------------------------------

    async def store_status(self) -> str:
        """ "ok" when the store answers a ping, else "unavailable" (for readiness)."""
        try:
            await self._store.ping()
        except StoreError as exc:
            self.health.failed(exc)
            return "unavailable"
        self.health.recovered()
        return "ok"

    @property
    def allowances(self) -> Allowances:
        """This process's level allowances (``allowances.py``)."""
        return self._allowances

    @property
    def buffered_records(self) -> int:
        return len(self._flusher)

    @property
    def dropped_records(self) -> int:
        return self._buffer.dropped

    @property
    def active_alerts(self) -> dict[str, bool]:
        """Every alert scope ("overall", "tier:<name>") → crossed in the current window."""
        return self._spend.active() if self._spend is not None else {}

    # -- background --------------------------------------------------------------------------

    def _start_background(self) -> None:
        loop = asyncio.get_running_loop()
        if self._flush_task is None:
            self._flush_task = loop.create_task(self._flusher.run())
        if self._sweep_task is None and self.sweeper.interval_s > 0:
            self._sweep_task = loop.create_task(self.sweeper.run())
        if self._tend_task is None:
            self._tend_task = loop.create_task(self._allowances.run(self._clock))


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
