"""The shipper: usage records from the Redis stream into the ledger, in the background.

Each gateway process runs one (or ``gateway ledger ship`` runs one alone), a consumer of the
stream's group ``ledger``. A batch is read (stale entries of dead consumers claimed first),
inserted in one transaction, then acknowledged: a crash between the two re-ships the batch and
the ledger's key stores it once. After a batch smaller than ``batch`` (the stream was drained)
the loop waits ``linger_ms`` before reading again: each insert is one statement with five
upserts, whose cost in the shipper and in Postgres is mostly per statement, so a read as soon
as one record arrives (a few records per insert under load) cost about twice what shipping
the same records a fifth of a second later in one insert does. While Postgres is down the
batch is retried with backoff and the stream keeps everything not acknowledged
(``stream.trim_shipped`` never trims past it).
Never on the request path: it shares only the Redis client with the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from gateway.ledger import migrate, partitions, retention, stream, writer
from gateway.ledger.db import ERRORS as DB_ERRORS
from gateway.ledger.db import Database
from gateway.ledger.metrics import LedgerMetrics
from gateway.ledger.rows import Row, parse
from gateway.ledger.settings import LedgerSettings
from gateway.store.redis.errors import raise_if_cancelled
from gateway.store.redis.store import RedisStore

log = logging.getLogger("gateway.ledger")
RETRIED: tuple[type[BaseException], ...] = (*DB_ERRORS, RedisError)
BLOCK_MS = 500
UPKEEP_S = 1.0  # lag, trim and stale claims at most this often
MAINTENANCE_S = 3600.0  # partitions ahead, retention of partitions and rollups
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class Shipper:
    def __init__(
        self,
        settings: LedgerSettings,
        database: Database,
        redis: Any,
        *,
        metrics: LedgerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        consumer: str | None = None,
    ) -> None:
        """``redis``: a redis-py client, or the ``RedisStore`` whose client to use."""
        self._settings = settings
        self._db = database
        # the store's client is read at each use: a cluster store replaces a broken one
        self._client_of: Callable[[], Any] = (
            (lambda: redis.client) if isinstance(redis, RedisStore) else (lambda: redis)
        )
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._task: asyncio.Task[None] | None = None
        self._days: set[dt.date] = set()
        self._claim_cursor = "0-0"
        self._retry: list[stream.Entry] = []  # a batch read but not yet acknowledged
        # -inf: each periodic part is due at the first step, whatever the host's uptime
        # (the monotonic clock starts near 0 at boot)
        self._upkept = -math.inf
        self._claimed = -math.inf
        self._grouped = False  # the consumer group is known to exist
        self._maintained = -math.inf
        self._drained = False  # the last read found fewer entries than a batch
        self.lag: int | None = None  # last measured; None before the first measure
        self.postgres = "unknown"  # "ok" | "down" | "unknown"
        self.shipped = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def _redis(self) -> Any:
        return self._client_of()

    async def start(self) -> None:
        if self._metrics is not None:
            self._metrics.stream_cap.set(self._settings.stream_cap)
        self._task = asyncio.create_task(self._run(), name="ledger-shipper")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def status(self) -> dict[str, Any]:
        return {"lag_records": self.lag, "postgres": self.postgres, "consumer": self.consumer}

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.step()
                raise_if_cancelled()  # redis-py may have swallowed it
                failures = 0
                if self._drained and self._settings.linger_ms:
                    await asyncio.sleep(self._settings.linger_ms / 1000)
            except asyncio.CancelledError:
                raise
            except RETRIED as exc:
                failures += 1
                if isinstance(exc, DB_ERRORS):
                    self.postgres = "down"
                elif "NOGROUP" in str(exc):  # the stream was deleted (FLUSHALL): make it again
                    self._grouped = False
                if self._metrics is not None:
                    kind = "postgres" if isinstance(exc, DB_ERRORS) else "redis"
                    self._metrics.failures.labels(kind).inc()
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("ledger: shipping failed (%d in a row): %s", failures, _what(exc))
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])
            except Exception:
                failures += 1
                log.exception("ledger: unexpected error while shipping")
                if self._metrics is not None:
                    self._metrics.failures.labels("unexpected").inc()
                await asyncio.sleep(BACKOFF_S[-1])

    async def step(self, block_ms: int = BLOCK_MS) -> int:
        """One round: upkeep when due, then one batch (stale claims first); rows inserted."""
        now = self._monotonic()
        if now - self._upkept >= UPKEEP_S:  # Redis only: measured while Postgres is down too
            self._upkept = now
            await self.upkeep()
        if now - self._maintained >= MAINTENANCE_S:
            await self.maintain()
            self._maintained = now
        entries = self._retry
        if not entries and now - self._claimed >= UPKEEP_S:
            self._claimed = now
            self._claim_cursor, entries = await stream.claim_stale(
                self._redis,
                self.consumer,
                self._settings.claim_idle_ms,
                self._settings.batch,
                self._claim_cursor,
            )
        self._drained = False
        if not entries:
            entries = await stream.read_new(
                self._redis, self.consumer, self._settings.batch, block_ms
            )
            self._drained = 0 < len(entries) < self._settings.batch
        return await self.ship(entries)

    async def ship(self, entries: list[stream.Entry]) -> int:
        """Insert ``entries``' rows and acknowledge them; retried by the loop on failure (the
        entries stay pending with this consumer until then)."""
        if not entries:
            return 0
        self._retry = entries
        rows, skipped = self._rows(entries)
        inserted = 0
        if rows:
            try:
                inserted = await self._insert(rows)
            except DB_ERRORS:
                self.postgres = "down"
                raise
            self.postgres = "ok"
        await stream.ack(self._redis, [entry.id for entry in entries])
        self._retry = []
        self.shipped += inserted
        if self._metrics is not None:
            self._metrics.shipped.inc(inserted)
            if rows:
                self._metrics.inserts.inc()
            self._metrics.duplicates.inc(len(rows) - inserted)
            self._metrics.rejected.inc(skipped)
        return inserted

    async def upkeep(self) -> None:
        """Measure the lag, trim what every group acknowledged (Redis only)."""
        if not self._grouped:
            await stream.ensure_group(self._redis)
            self._grouped = True
        backlog = await stream.backlog(self._redis)
        self.lag = backlog.lag
        if self._metrics is not None:
            self._metrics.lag.set(backlog.lag)
            self._metrics.stream_length.set(backlog.length)
        if backlog.lag > 0.8 * self._settings.stream_cap:
            log.warning(
                "ledger: %d records not shipped, near the stream's cap of %d: records past "
                "the cap are lost; is Postgres reachable?",
                backlog.lag,
                self._settings.stream_cap,
            )
        await stream.trim_shipped(self._redis)

    async def maintain(self) -> None:
        """Migrations (when allowed), partitions ahead, retention."""
        pool = await self._db.pool()
        async with pool.acquire() as conn:
            if self._settings.auto_migrate:
                await migrate.upgrade(conn)
            today = self._today()
            await partitions.ensure_ahead(conn, today, self._settings.partitions_ahead)
            dropped = await partitions.drop_expired(conn, today, self._settings.retention_days)
            self._days = await partitions.existing(conn)
            pruned = await retention.prune_rollups(conn, today, self._settings.rollup_days_kept)
        self.postgres = "ok"
        if dropped:
            log.info("ledger: retention dropped %s", ", ".join(dropped))
        if pruned:
            log.info("ledger: rollup retention deleted %s", pruned)

    # -- internals ------------------------------------------------------------------------

    def _rows(self, entries: list[stream.Entry]) -> tuple[list[Row], int]:
        oldest = partitions.oldest_kept(self._today(), self._settings.retention_days)
        rows, skipped = [], 0
        for entry in entries:
            row = parse(entry.id, entry.raw)
            if row is None or (oldest is not None and row.day < oldest):
                skipped += 1
                continue
            rows.append(row)
        return rows, skipped

    async def _insert(self, rows: list[Row]) -> int:
        pool = await self._db.pool()
        async with pool.acquire() as conn:
            missing = {row.day for row in rows} - self._days
            if missing:
                await partitions.ensure(conn, missing)
                self._days |= missing
            for attempt in range(3):
                try:
                    async with conn.transaction():
                        return await writer.insert(conn, rows)
                except DB_ERRORS as exc:
                    if _bad_data(exc):
                        return await self._one_by_one(conn, rows)
                    if attempt == 2 or not _retryable(exc):
                        raise
        return 0  # pragma: no cover

    async def _one_by_one(self, conn: Any, rows: list[Row]) -> int:
        """A batch Postgres refused for its data: each row alone, the refused ones skipped
        (logged, counted as rejected), so one bad record cannot stall the ledger."""
        inserted = 0
        for row in rows:
            try:
                async with conn.transaction():
                    inserted += await writer.insert(conn, [row])
            except DB_ERRORS as exc:
                if not _bad_data(exc):
                    raise
                log.warning("ledger: record %s refused: %s", row.request_id[:64], _what(exc))
                if self._metrics is not None:
                    self._metrics.rejected.inc()
        return inserted

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()


def _retryable(exc: BaseException) -> bool:
    """A deadlock or serialisation failure, or a session without the writer's staging table
    (``writer.insert`` makes it on the next attempt): run the same transaction again."""
    return getattr(exc, "sqlstate", None) in ("40P01", "40001", "42P01")


def _bad_data(exc: BaseException) -> bool:
    """Postgres refused the values themselves (class 22: data exception)."""
    return str(getattr(exc, "sqlstate", "") or "").startswith("22")


def _what(exc: BaseException) -> str:
    """An error for the log, without the connection string."""
    return f"{type(exc).__name__}: {str(exc)[:200]}"
