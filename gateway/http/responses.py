"""Small response helpers shared by the non-proxied endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def json_response(
    document: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(document),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )
