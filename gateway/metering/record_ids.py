"""Each usage record's own id, what the ledger keys rows by (never the client's X-Request-Id)."""

from __future__ import annotations

import itertools
import secrets


class RecordIds:
    """Ids unique across processes: a random 64-bit half per process and a counter. The id is
    written into the record itself, so a record shipped or settled twice keeps its id."""

    def __init__(self) -> None:
        self._prefix = secrets.token_urlsafe(8)
        self._numbers = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}.{next(self._numbers):x}"
