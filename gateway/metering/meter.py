"""The meter: what the request pipeline calls before forwarding and after the answer.

``admit`` reserves in one store round trip (or raises); ``finish`` schedules the settle in the
background, so reconciling and writing the usage record add no latency. When the store is
down, ``Settings.on_store_error`` decides: "allow" admits without a reservation, "deny"
raises ``StoreUnavailable``; settles are buffered and flushed when the store returns.

A call the store refuses for its own arguments (``StoreRejected``: a script error) fails that
request with a 400 and leaves the store's health alone; amounts no store can hold exactly are
refused before the store is called. Each reservation has a lease: its settle ends it, and if
the worker dies first a background sweep gives the grants back once ``lease_ttl_s`` passed
(default ``LEASE_TTL_S``). A lease that expires while its request still runs only loosens
the quota for the rest of that request: the settle then adds the actual usage without giving
anything back, so the counters end exact either way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from gateway.config.model import Config, Quota
from gateway.errors import InvalidRequest, StoreUnavailable
from gateway.metering import plan, tier_shards
from gateway.metering.admit_checks import check_amounts as _check_amounts
from gateway.metering.admit_checks import clamp as _clamp
from gateway.metering.admit_checks import tier_refused as _tier_refused
from gateway.metering.buffer import Flusher, UsageBuffer
from gateway.metering.health import StoreHealth
from gateway.metering.last_known import LastKnown
from gateway.metering.limit_errors import exceeded, rate_limit_headers
from gateway.metering.meter_reads import MeterReads
from gateway.metering.meter_status import MeterStatus
from gateway.metering.record import UsageRecord
from gateway.metering.record_ids import RecordIds
from gateway.metering.settle import Settlement, settlement
from gateway.metering.types import Admission, Amounts, Check, MeterRequest, Outcome
from gateway.metering.windows import Windows, windows_at
from gateway.store import keys
from gateway.store.port import (
    Lease,
    LeaseEnd,
    SettleBatch,
    Store,
    StoreError,
    StoreRejected,
    Verdict,
)
from gateway.usage.alerts import CostAlerts
from gateway.usage.webhook import WebhookSender

logger = logging.getLogger("gateway.metering")

WEBHOOK_TIMEOUT_S = 10.0
RecordHook = Callable[[UsageRecord], None]
# Longer than any request should last: a stream's idle timeout bounds the gaps, not the total.
LEASE_TTL_S = 900
SWEEP_INTERVAL_S = 5.0
OUTAGE_NOTE = " (usage store unavailable: counted from what was left at the last reservation)"


class Meter(MeterReads, MeterStatus):
    """The meter: admit and finish on the request path; reads and figures from its bases."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        http: httpx.AsyncClient | None = None,
        on_record: RecordHook | None = None,
        on_store_error: Callable[[], None] | None = None,
        lease_ttl_s: int = LEASE_TTL_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        """``on_record`` sees every usage record once settled (for token and cost metrics);
        ``on_store_error`` is called on each store error (for an error counter)."""
        self._lease_ttl_s = lease_ttl_s
        self._sweep_interval_s = sweep_interval_s
        self._lease_prefix = secrets.token_hex(6)
        self._lease_numbers = itertools.count()
        self._record_ids = RecordIds()
        self._sweep_task: asyncio.Task[None] | None = None
        self._config = config
        self._tier_quotas: Mapping[tuple[str, str], Quota] = {}  # set at run time
        self._limits = plan.LimitCache(config)
        self._last_known = LastKnown()  # what a store outage may still admit
        self._full_shards = tier_shards.FullShards()
        self._store = store
        self._clock = clock
        self._own_http: httpx.AsyncClient | None = None
        self._on_record = on_record
        self._health = StoreHealth(logger, on_error=on_store_error)
        self._buffer = UsageBuffer(config.settings.usage_buffer_max, logger)
        self._flusher = Flusher(self._buffer, store, self._health, self._written, logger)
        self._webhook: WebhookSender | None = None
        if config.alerts.webhook_url:
            if http is None:
                http = self._own_http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
            self._webhook = WebhookSender(config.alerts.webhook_url, http, logger)
        self._alerts = CostAlerts(config.alerts, store, clock, logger, self._webhook)
        self._flush_task: asyncio.Task[None] | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        # set by the app when the ledger (gateway/ledger/) holds the records: any date range
        self.records_reader: Callable[..., Awaitable[Any]] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background tasks (buffer flusher, alert webhook sender)."""
        self._start_background()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Wait for pending settles, flush the buffer and send queued alerts (each up to
        ``timeout_s``), then stop the background tasks. The store is the caller's to close."""
        await self.settled()
        await _cancel(self._flush_task)
        await _cancel(self._sweep_task)
        self._flush_task = self._sweep_task = None
        if not await self._flusher.drain(timeout_s):
            logger.error("metering: %d usage records lost at shutdown", len(self._flusher))
        if self._webhook is not None:
            await self._webhook.drain(timeout_s)
        await _cancel(self._webhook_task)
        self._webhook_task = None
        if self._own_http is not None:
            await self._own_http.aclose()

    async def settled(self) -> None:
        """Wait until every finished request is written (or held in the buffer while the
        store is unreachable)."""
        while len(self._flusher) and self._health.should_try():
            if not await self._flusher.flush_once():
                return

    # -- the request path --------------------------------------------------------------------

    async def admit(self, request: MeterRequest) -> Admission:
        """Reserve the request's usage; raise ``QuotaExceeded`` / ``BudgetExceeded`` when it
        does not fit, ``StoreUnavailable`` when the store is down and the policy is "deny"."""
        now = self._clock()
        windows = windows_at(now)
        limits = self._limits.get(request)
        checks = plan.reservation(limits, request, windows)
        _check_amounts(checks)
        lease = self._lease()
        verdict = await self._reserve(checks, request.user, lease)
        if verdict is not None and _tier_refused(checks, verdict) and limits.tier_shards > 1:
            spilled = await self._spill_over(request, limits, windows, checks, verdict, lease)
            checks, verdict, lease = spilled
        if verdict is None:
            denial = self._last_known.take(checks)
            if denial is not None:
                raise exceeded(request, checks, denial, windows, now, OUTAGE_NOTE)
            clamp = _clamp(request, plan.output_tokens(limits, request))
            return Admission({}, clamp, request, now, checks=checks, lease=lease.id)
        self._last_known.record(checks, verdict)
        if not verdict.ok:
            raise exceeded(request, checks, verdict, windows, now)
        granted = dict(zip([check.kind for check in checks], verdict.granted, strict=True))
        reserved = Amounts(*[granted.get(kind, 0) for kind in plan.AMOUNT_KINDS])
        tokens = checks[plan.TOKENS_INDEX].counter
        flex = (
            reserved.tokens - tokens.fixed if tokens.flex else plan.output_tokens(limits, request)
        )
        return Admission(
            rate_limit_headers(checks, verdict, windows, now),
            _clamp(request, flex),
            request,
            now,
            reserved,
            checks,
            verdict.granted,
            lease.id,
        )

    def _lease(self) -> Lease:
        return Lease(f"{self._lease_prefix}.{next(self._lease_numbers)}", self._lease_ttl_s)

    async def _spill_over(
        self,
        request: MeterRequest,
        limits: plan.ConfigLimits,
        windows: Windows,
        checks: tuple[Check, ...],
        verdict: Verdict,
        lease: Lease,
    ) -> tuple[tuple[Check, ...], Verdict | None, Lease]:
        """The home shard of the tier budget refused: try the other shards not known to be
        full (``tier_shards``); the last answer stands."""
        tier, shards = request.tier.name, limits.tier_shards
        home = tier_shards.home_shard(request.user, shards)
        self._full_shards.mark(tier, home)
        for shard in self._full_shards.others(tier, home, shards):
            lease = self._lease()
            checks = plan.reservation(limits, request, windows, shard)
            answer = await self._reserve(checks, request.user, lease)
            if answer is None or not _tier_refused(checks, answer):
                return checks, answer, lease
            verdict = answer
            self._full_shards.mark(tier, shard)
        return checks, verdict, lease

    def finish(self, admission: Admission, outcome: Outcome) -> None:
        """Queue the settle (reconcile, record, aggregates); never raises.

        One writer task drains the queue, so under load many requests share one store call
        (group commit), and when the store is down the same queue is the outage buffer.
        """
        try:
            item = settlement(admission, outcome, self._record_ids())
            if item.record is not None:
                self._notify(item.record)
            self._buffer.add(item)
            self._start_background()
        except Exception:
            logger.exception("metering: settling %s failed", admission.request.request_id)

    def finish_elsewhere(
        self, request: MeterRequest, started: float, lease: str, granted: Sequence[int],
        outcome: Outcome,
    ) -> None:  # fmt: skip
        """Settle a reservation another worker made (a video job whose watcher died): its
        checks are worked out again as at ``started``. If its lease was swept meanwhile, the
        settle adds the grants back first, as for any late settle; never raises."""
        try:
            checks = plan.reservation(self._limits.get(request), request, windows_at(started))
        except Exception:
            logger.exception("metering: settling %s failed", request.request_id)
            return
        held = tuple(granted) if len(granted) == len(checks) else ()  # () : add the actual use
        self.finish(Admission({}, None, request, started, checks=checks, granted=held,
                              lease=lease), outcome)  # fmt: skip

    def reject(self, request: MeterRequest, outcome: Outcome) -> None:
        """Record a request that a quota or budget refused; nothing was reserved for it."""
        self.finish(Admission({}, None, request, self._clock()), outcome)

    async def _reserve(self, checks: tuple[Check, ...], user: str, lease: Lease) -> Verdict | None:
        if self._health.should_try():
            try:
                counters = [check.counter for check in checks]
                verdict = await self._store.reserve(counters, keys.user_overrides(user), lease)
            except StoreRejected as exc:
                self._health.recovered()  # it answered: the request is at fault, not the store
                logger.warning("metering: the store refused a reservation: %s", exc)
                raise InvalidRequest(
                    "The request's usage cannot be metered: an amount is out of range."
                ) from None
            except StoreError as exc:
                self._health.failed(exc)
                if self._config.settings.on_store_error == "deny":
                    self._give_back(checks, lease)
            else:
                self._health.recovered()
                return verdict
        if self._config.settings.on_store_error == "deny":
            raise StoreUnavailable("Usage metering is unavailable; try again shortly")
        return None

    def _give_back(self, checks: tuple[Check, ...], lease: Lease) -> None:
        """A refused request whose reserve timed out may still have run in the store (a
        stalled Redis runs it when resumed): queue the end of its lease, which gives back
        whatever the lease holds, if anything. The flusher sends it once the store answers;
        ending a lease that never existed does nothing."""
        groups = dict.fromkeys(keys.lease(check.counter.key) for check in checks)
        ends = tuple(LeaseEnd(group, lease.id) for group in groups)
        self._buffer.add(Settlement(SettleBatch((), leases=ends), (), None))
        self._start_background()

    async def _written(self, items: Sequence[Settlement], results: list[list[int]]) -> None:
        for item, totals in zip(items, results, strict=True):
            if totals or not item.spend:  # none: the batch had already been applied
                await self._alerts.observe(item.spend, totals)

    def _notify(self, record: UsageRecord) -> None:
        if self._on_record is None:
            return
        try:
            self._on_record(record)
        except Exception:
            logger.exception("metering: on_record hook failed")

    # -- configuration -----------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A reloaded config's limits for the requests admitted from now on (alerts, the
        webhook and the buffer's size stay as started)."""
        self._config = config
        self._limits = plan.LimitCache(config, tier_quotas=self._tier_quotas)

    def set_tier_quotas(self, quotas: Mapping[tuple[str, str], Quota]) -> None:
        """Run-time tier quotas, (tier, capability) → the quota replacing the tier's own."""
        self._tier_quotas = quotas
        self._limits = plan.LimitCache(self._config, tier_quotas=quotas)

    # -- background --------------------------------------------------------------------------

    def _start_background(self) -> None:
        loop = asyncio.get_running_loop()
        if self._flush_task is None:
            self._flush_task = loop.create_task(self._flusher.run())
        if self._sweep_task is None and self._sweep_interval_s > 0:
            self._sweep_task = loop.create_task(self._sweep_leases())
        if self._webhook is not None and self._webhook_task is None:
            self._webhook_task = loop.create_task(self._webhook.run())

    async def sweep_leases(self) -> int:
        """Give back the reservations whose lease expired (their worker died); how many."""
        try:
            ended = await self._store.sweep_leases()
        except StoreError as exc:
            logger.debug("metering: lease sweep failed: %s", exc)
            return 0
        if ended:
            logger.warning(
                "metering: gave back %d reservations whose lease expired",
                ended,
                extra={"event": "leases_expired", "leases": ended},
            )
        return ended

    async def _sweep_leases(self) -> None:
        while True:  # the first at start: a restarted worker's expired leases come back now
            try:
                await self.sweep_leases()
            except Exception:
                logger.exception("metering: lease sweep failed")
            await asyncio.sleep(self._sweep_interval_s)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
