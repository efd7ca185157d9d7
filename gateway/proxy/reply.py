"""What the pipeline answers: status, headers and a body, whole or as a relay, for http/ to send."""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import NamedTuple

import orjson

from gateway.errors import GatewayError

JSON = "application/json"


class Reply(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes | AsyncIterable[bytes]  # an iterable is relayed as it comes
    media_type: str | None = JSON

    @property
    def relayed(self) -> bool:
        return not isinstance(self.body, bytes)


def error_reply(error: GatewayError, headers: Mapping[str, str] | None = None) -> Reply:
    """The OpenAI-shaped error body; ``headers`` add to the error's own."""
    return Reply(error.status, {**error.headers, **(headers or {})}, orjson.dumps(error.body()))
