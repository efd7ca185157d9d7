"""What the pipeline answers: status, headers and a body, whole or as a relay, for http/ to send."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping
from typing import NamedTuple

import orjson

from gateway.errors import GatewayError

JSON = "application/json"


class Reply(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes | AsyncIterable[bytes]  # an iterable is relayed as it comes
    media_type: str | None = JSON
    # Run once the reply is handed out, its last byte sent or the client gone (the pipeline's
    # listeners: billing, access log, metrics), so they never delay the answer.
    after: Callable[[], None] | None = None

    @property
    def relayed(self) -> bool:
        return not isinstance(self.body, bytes)


def error_reply(error: GatewayError, headers: Mapping[str, str] | None = None) -> Reply:
    """The OpenAI-shaped error body; ``headers`` add to the error's own."""
    return Reply(error.status, {**error.headers, **(headers or {})}, orjson.dumps(error.body()))
