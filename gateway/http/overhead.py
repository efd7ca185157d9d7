"""``x-gateway-overhead-ms`` on the answers the pipeline does not give (404s, 405s, 413s...).

All their time is the gateway's own: the figure runs from the app's first look at the request
to the answer's headers.
"""

from __future__ import annotations

import time

from starlette.types import Message, Send

from gateway.proxy.pipeline import OVERHEAD_HEADER

_HEADER = OVERHEAD_HEADER.encode()


def overhead_value(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.3f}"


def stamped(send: Send, started: float) -> Send:
    """``send`` that adds the header, timed from ``started``, to an answer without one."""

    async def send_stamped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            if not any(name.lower() == _HEADER for name, _ in headers):
                headers.append((_HEADER, overhead_value(started).encode()))
                message = {**message, "headers": headers}
        await send(message)

    return send_stamped
