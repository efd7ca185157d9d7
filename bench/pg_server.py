"""A throwaway PostgreSQL for benchmarks: the tests' own (tests/ledger/pg_fixture.py).

``initdb`` + ``pg_ctl`` on a free port as user postgres, fsync off, optionally pinned to CPUs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/ importable

from tests.ledger.pg_fixture import PostgresServer, available

__all__ = ["PostgresServer", "available"]
