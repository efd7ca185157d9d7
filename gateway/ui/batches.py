"""The operators' batches page (``/ui/batches``): every user's latest batches and progress."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.batches.records import public_batch
from gateway.http.api.files import WithBatches
from gateway.http.services import services

SHOWN = 100  # the latest batches listed


async def operator_context(request: Request) -> dict[str, Any]:
    """The page's context: the batches as ``/v1/batches`` shows them, with their owner."""
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    rows: list[dict[str, Any]] = []
    if gateway.batches is not None:
        now = gateway.clock()
        for record, progress in await gateway.batches.everyone(SHOWN):
            rows.append({**public_batch(record, progress, now), "owner": record.owner})
    return {"batches": rows}
