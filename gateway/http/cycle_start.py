"""uvicorn's request cycle as the gateway's server starts one per request, at less cost.

The same state as uvicorn's ``RequestResponseCycle.__init__`` sets, in the same order, without
its call up (its per-request constants stay instance attributes: read from the class, they
cost more on each of their many reads than they save once). Its task leaves the server's set
of tasks (``tasks``) as ``run_asgi`` ends, not by a done callback added per request (one loop
callback fewer per request; the set is what uvicorn's shutdown and concurrency limit count).
``cycle.GatewayCycle`` builds on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from uvicorn._types import ASGI3Application, HTTPScope
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


def _nothing() -> None:
    pass


class StartedCycle(RequestResponseCycle):
    """uvicorn's cycle, built without the call up; ``task``, set by whoever started it,
    leaves ``tasks`` when ``run_asgi`` ends."""

    def __init__(
        self,
        scope: HTTPScope,
        transport: asyncio.Transport,
        flow: FlowControl,
        logger: logging.Logger,
        access_logger: logging.Logger,
        access_log: bool,
        default_headers: list[tuple[bytes, bytes]],
        message_event: asyncio.Event,
        expect_100_continue: bool,
        keep_alive: bool,
        on_response: Callable[..., None],
        tasks: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.logger = logger
        self.access_logger = access_logger
        self.access_log = access_log
        self.default_headers = default_headers
        self.message_event = message_event
        self.on_response = on_response
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = bytearray()
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        self.tasks = tasks
        self.task: asyncio.Task[None] | None = None

    async def run_asgi(self, app: ASGI3Application) -> None:
        """uvicorn's, its ``task`` then taken out of ``tasks``."""
        try:
            result = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.transport.close()
        else:
            if result is not None:
                msg = "ASGI callable should return None, but returned '%s'."
                self.logger.error(msg, result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = _nothing
            if self.tasks is not None and self.task is not None:
                self.tasks.discard(self.task)
