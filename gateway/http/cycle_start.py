"""uvicorn's request cycle as the gateway's server starts one per request, at less cost.

uvicorn's ``RequestResponseCycle.__init__`` stores seventeen attributes per request, six of
them the same for every request; here those are read from the class until set. Its task
leaves the server's set of tasks (``tasks``) as ``run_asgi`` ends, not by a done callback
added per request (one loop callback fewer per request; the set is what uvicorn's shutdown
and concurrency limit count). ``cycle.GatewayCycle`` builds on it.
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
    """uvicorn's cycle: the same state, built with fewer stores; ``task``, set by whoever
    started it, leaves ``tasks`` when ``run_asgi`` ends."""

    # uvicorn's per-request state as every request starts, read from the class until set
    disconnected = False
    more_body = True
    response_started = False
    response_complete = False
    chunked_encoding: bool | None = None
    expected_content_length = 0
    task: asyncio.Task[None] | None = None

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
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = bytearray()
        self.tasks = tasks

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
