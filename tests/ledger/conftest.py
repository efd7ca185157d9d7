"""Fixtures of the ledger tests: one PostgreSQL per session, a fresh database per test."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

from tests.ledger.pg_fixture import PostgresServer, available


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not available():
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed: run tests/setup.sh")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database on the session's server (the server is started if a test stopped
    it)."""
    name = f"t_{secrets.token_hex(4)}"
    base = postgres_server.url

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    yield base.rsplit("/", 1)[0] + f"/{name}"
