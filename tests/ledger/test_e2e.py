"""Requests through two gateway processes → exactly one ledger row each, through a gateway
SIGKILLed mid-shipping and Postgres stopped and restarted under load.

CI sends LEDGER_E2E_REQUESTS (default 2,000) with a LEDGER_E2E_OUTAGE_S (default 10) outage;
``bench/ledger_e2e.py`` runs the same scenario with 10,000.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.ledger.pg_fixture import PostgresServer
from tests.ledger.scenario import run
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer


def test_every_request_is_one_row_through_a_kill_and_an_outage(
    tmp_path: Path,
    upstream: MockUpstream,
    redis: RedisServer,
    postgres_server: PostgresServer,
    database_url: str,
) -> None:
    total = int(os.environ.get("LEDGER_E2E_REQUESTS", "2000"))
    outage_s = float(os.environ.get("LEDGER_E2E_OUTAGE_S", "10"))
    outcome = asyncio.run(
        run(
            tmp_path,
            upstream.base_url,
            redis.url,
            postgres_server,
            database_url,
            total,
            outage_s,
        )
    )
    print(outcome)
    assert outcome.statuses == {200: total}
    assert outcome.sent == total
    assert outcome.killed_with_pending > 0  # the kill did land mid-shipping
    assert outcome.rows == total
    assert outcome.distinct_ids == total
    assert outcome.rollup_requests == total
