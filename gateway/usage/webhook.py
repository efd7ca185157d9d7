"""Delivers alert payloads to a webhook in the background, with retries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson

ATTEMPTS = 5
BACKOFF_S = 0.2
QUEUE_MAX = 1000


class WebhookSender:
    """``send()`` queues a JSON payload (never blocks); ``run()`` POSTs queued payloads.

    A delivery is retried on a transport error or a non-2xx answer, ``attempts`` times in
    all, waiting ``backoff_s * 2**n`` between tries.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        logger: logging.Logger,
        *,
        attempts: int = ATTEMPTS,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self._url = url
        self._http = http
        self._logger = logger
        self._attempts = attempts
        self._backoff = backoff_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.delivered = 0
        self.failed = 0

    def send(self, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.failed += 1
            self._logger.error("alert webhook queue full; alert not sent")

    async def run(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self._deliver(payload)
            finally:
                self._queue.task_done()

    async def drain(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            self._logger.error("alert webhook: %d alerts not sent at shutdown", self._queue.qsize())

    async def _deliver(self, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        headers = {"content-type": "application/json"}
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = await self._http.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                self.delivered += 1
                return
            problem = f"HTTP {response.status_code}"
        self.failed += 1
        self._logger.error(
            "alert webhook failed after %d attempts: %s",
            self._attempts,
            problem,
            extra={"event": "alert_webhook_failed"},
        )
