"""Versioned schema migrations: the SQL files in ``migrations/``, each applied once, in order.

A migration file is ``NNNN_name.sql``; its version is ``NNNN``. Applied versions are rows of
``schema_migrations``. Replicas starting together serialise on an advisory lock, so each file
runs once, in its own transaction.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

MIGRATION_LOCK = 7_172_017  # pg_advisory_xact_lock key for schema changes
NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("gateway.ledger").joinpath("migrations").iterdir():
        match = NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


async def applied(conn: Any) -> set[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}


async def upgrade(conn: Any) -> list[str]:
    """Apply every pending migration; the names of those applied now."""
    done = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = await applied(conn)
        for version, name, sql in migrations():
            if version in have:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            done.append(name)
    return done


async def pending(conn: Any) -> list[str]:
    have = await applied(conn)
    return [name for version, name, _ in migrations() if version not in have]
