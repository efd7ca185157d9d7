"""Usage records of a time range, from the ledger when it holds them, else from the store.

The store keeps recent records only (the usage stream and the per-user day index); the ledger
(PostgreSQL, ``gateway/ledger/``) keeps every record, and the app hands its reader in when
DATABASE_URL is set. A store error is ``StoreUnavailable`` (a 503), as for the meter's reads.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from gateway.errors import InvalidRequest, StoreUnavailable
from gateway.metering.record import UsageRecord
from gateway.store.port import Store, StoreError, StoreRejected
from gateway.usage.history import read_records, read_user_records

logger = logging.getLogger("gateway.usage")


class LedgerReader(Protocol):
    """The ledger's records of [start, end), oldest first (``Ledger.records``)."""

    def __call__(
        self, user: str | None, start: float, end: float, *, skip: int, limit: int | None
    ) -> Awaitable[list[UsageRecord]]: ...


class UsageRecords:
    """Reads usage records for ``/v1/usage`` and the tests: ledger first, else the store."""

    def __init__(
        self, store: Store, clock: Callable[[], float], ledger: LedgerReader | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._ledger = ledger

    @property
    def source(self) -> Literal["postgres", "redis"]:
        """Where ``read`` reads: "postgres" (the ledger, any range) or "redis" (the
        stream: recent records only)."""
        return "postgres" if self._ledger is not None else "redis"

    async def read(
        self, user: str | None, start: float, end: float, skip: int = 0, limit: int | None = None
    ) -> list[UsageRecord]:
        """Usage records of ``user`` (every user when None) with ``start <= ts < end``, oldest
        first; the first ``skip`` left out, at most ``limit`` (a page)."""
        if self._ledger is not None:
            return list(await self._ledger(user, start, end, skip=skip, limit=limit))
        try:
            if user is None:
                found = await read_records(self._store, None, start, end)
            else:
                found = await read_user_records(self._store, user, start, end, self._clock())
        except StoreRejected as exc:
            logger.warning("usage: the store refused a read: %s", exc)
            raise InvalidRequest("The store refused this operation.") from None
        except StoreError as exc:
            raise StoreUnavailable("The usage store is unavailable; try again shortly") from exc
        return found[skip : None if limit is None else skip + limit]
