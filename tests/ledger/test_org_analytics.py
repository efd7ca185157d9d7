"""Analytics by organization and team: the same records through the Redis rollups and the
ledger (a real Redis and a real PostgreSQL) give the same totals and the same records."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from gateway.config.model import Settings
from gateway.ledger import migrate, partitions
from gateway.ledger.db import Database
from gateway.ledger.reader import read_records
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.ledger.statements import ledger_lines
from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import encode
from gateway.store.factory import create_store
from gateway.store.port import SettleBatch
from gateway.usage.analytics import RedisAnalytics, UsageFilter
from gateway.usage.postgres_analytics import PostgresAnalytics
from gateway.usage.rollup import SEP, day_key
from gateway.usage.statement_rollups import rollup_lines
from tests.ledger.test_shipper import drain
from tests.redis_fixture import RedisServer

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
# user → (org, team) of its key; u3's key is in no team; u1's second key is in another org's team
TEAMS = {"u0": ("acme", "ml"), "u1": ("acme", "ml"), "u2": ("acme", "web"), "u3": (None, None)}


def made() -> list[UsageRecord]:
    """Every 25 minutes over 3 days: four users, two models, errors and tags."""
    found = []
    for n in range(3 * 24 * 60 // 25):
        user = f"u{n % 4}"
        org, team = TEAMS[user]
        key = f"k{n % 4}"
        if user == "u1" and n % 3 == 0:
            org, team, key = "beta", "ops", "k1b"
        found.append(
            UsageRecord(
                ts=DAY0 + n * 1500 + 11,
                record_id=f"id{n}",
                request_id=f"r{n}",
                user=user,
                key_id=key,
                tier="free",
                capability="text_generation",
                model=("small", "large")[n % 2],
                provider="p",
                prompt_tokens=10,
                completion_tokens=n % 9,
                cost_usd=0.002,
                charged_usd=0.002,
                status=500 if n % 11 == 0 else 200,
                latency_ms=float(n % 40),
                tags=("a",) if n % 5 == 0 else (),
                org=org,
                team=team,
            )
        )
    return found


QUERIES: list[tuple[dict[str, Any], list[str], str]] = [
    ({}, ["org"], "all"),
    ({}, ["team"], "day"),
    ({}, ["org", "team", "model"], "all"),
    ({"org": "acme"}, ["team"], "all"),
    ({"org": "acme"}, ["user", "key_id"], "day"),
    ({"team": "ml"}, ["user"], "all"),
    ({"team": "ml", "tag": "a"}, ["model"], "all"),
    ({"team": "ops"}, [], "hour"),
    ({"org": "-"}, ["user"], "all"),
    ({"team": "web", "model": "small"}, ["org"], "day"),
    ({"team": "ml", "status": "error"}, [], "all"),
    ({"org": "beta", "user": "u1"}, ["team"], "all"),
]
MEASURES = ("requests", "prompt_tokens", "completion_tokens", "errors", "fallbacks")


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows without the p95 (exact from rows, absent from rollups) and cost to the micro."""
    return [
        {
            **{k: v for k, v in row.items() if k != "p95_latency_ms"},
            "cost_usd": round(row["cost_usd"], 6),
        }
        for row in rows
    ]


def expected(records: list[UsageRecord], flt: UsageFilter, group_by: list[str]) -> dict[Any, int]:
    """Requests per group, counted here from the records themselves."""
    wanted = flt.dimensions()
    counted: dict[Any, int] = {}
    for r in records:
        values = {"org": r.org or "-", "team": r.team or "-", "user": r.user,
                  "key_id": r.key_id, "model": r.model or "-"}  # fmt: skip
        if not flt.start <= r.ts < flt.end:
            continue
        if any(k in values and values[k] != v for k, v in wanted.items()):
            continue
        if "tag" in wanted and wanted["tag"] not in r.tags:
            continue
        if wanted.get("status") == "error" and r.status < 400:
            continue
        group = tuple(values[g] for g in group_by)
        counted[group] = counted.get(group, 0) + 1
    return counted


def test_both_backends_agree_by_org_and_team(redis: RedisServer, database_url: str) -> None:
    records = made()

    async def scenario() -> None:
        store = create_store(redis.url, Settings())
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(LedgerSettings(database_url=database_url, retention_days=0), db, client)
        in_redis, in_postgres = RedisAnalytics(store), PostgresAnalytics(db)
        try:
            await store.settle([SettleBatch((), encode(r)) for r in records])
            assert await in_redis.roller.run_once() == len(records)
            # partial days at both edges: rollups for the whole day, rows for the edges
            start, end = DAY0 + 5 * 3600, DAY0 + 2 * 86_400 + 9 * 3600
            ml = UsageFilter(start=start, end=end, team="ml")
            in_stream, _ = await in_redis.records(ml, 1000, None)
            await drain(shipper)  # trims the stream of what it shipped
            for where, group_by, bucket in QUERIES:
                flt = UsageFilter(start=start, end=end, **where)
                redis_rows = await in_redis.totals(flt, group_by, bucket)
                pg_rows = await in_postgres.totals(flt, group_by, bucket)
                assert comparable(redis_rows) == comparable(pg_rows), (where, group_by, bucket)
                counted: dict[Any, int] = {}
                for row in redis_rows:
                    group = tuple(row[g] for g in group_by)
                    counted[group] = counted.get(group, 0) + row["requests"]
                assert counted == expected(records, flt, group_by), (where, group_by)
                assert counted, (where, group_by)  # every query finds something
            ids = [r.record_id for r in records if r.team == "ml" and start <= r.ts < end]
            in_ledger, _ = await in_postgres.records(ml, 1000, None)
            for found in (in_stream, in_ledger):
                assert sorted(r.record_id or "" for r in found) == sorted(i or "" for i in ids)
                assert {(r.org, r.team) for r in found} == {("acme", "ml")}
            alone, _ = await in_postgres.records(UsageFilter(start, end, org="-"), 1000, None)
            assert {r.user for r in alone} == {"u3"} and {r.team for r in alone} == {None}
            shipped = await read_records(db, "u1", start, end)  # /v1/usage from the ledger
            assert {(r.org, r.team) for r in shipped} == {("acme", "ml"), ("beta", "ops")}
            month = DAY0, DAY0 + 31 * 86_400  # the statements' lines, from both
            from_ledger = await ledger_lines(db, *month, [f"u{n}" for n in range(4)])
            from_rollups = await rollup_lines(store, *month)
            assert sorted(from_ledger, key=repr) == sorted(from_rollups, key=repr)
            teams = {(line.user, line.org, line.team) for line in from_ledger}
            assert teams == {("u0", "acme", "ml"), ("u1", "acme", "ml"), ("u1", "beta", "ops"),
                             ("u2", "acme", "web"), ("u3", "", "")}  # fmt: skip
            [one] = await rollup_lines(store, *month, "u2")
            assert (one.org, one.team) == ("acme", "web")
        finally:
            await store.aclose()
            await client.aclose()
            await db.aclose()

    asyncio.run(scenario())


def test_rollups_folded_before_org_and_team_read_as_in_none(redis: RedisServer) -> None:
    """A combination of the ``people`` level stored without the two trailing values (folded
    before the level kept them) is counted, as in no organization or team."""

    async def scenario() -> None:
        store = create_store(redis.url, Settings())
        try:
            day = dt.datetime.fromtimestamp(DAY0, dt.UTC).strftime("%Y%m%d")
            old = SEP.join(["u9", "k9", "free", "text_generation", "200", "-"])
            entry = [3, 0, 0, 30, 6, 3000, {"5": 3}]
            document = orjson.dumps({old: entry})
            await store.put_document(day_key("people", day), "p", document, 3600)
            await store.put_document("gw:roll:state", "cursor", b"9999999999999-0", 3600)
            analytics = RedisAnalytics(store)
            flt = UsageFilter(DAY0, DAY0 + 86_400)
            rows = await analytics.totals(flt, ["user", "team"], "all")
            assert [(r["user"], r["team"], r["requests"]) for r in rows] == [("u9", "-", 3)]
            alone = UsageFilter(DAY0, DAY0 + 86_400, org="-")
            none = await analytics.totals(alone, ["user"], "all")
            assert [(r["user"], r["requests"]) for r in none] == [("u9", 3)]
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_migration_0005_rolls_up_again_the_days_with_teams(database_url: str) -> None:
    """Rows shipped before 0005 keep their organization and team in ``record`` only: the
    migration fills the columns and rolls those days up again, by organization and team."""
    day = dt.date(2026, 3, 2)
    moment = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    rows = [("r1", "acme", "ml"), ("r2", "acme", "ml"), ("r3", None, None)]

    async def scenario() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for version, _, sql in migrate.migrations():
                if version < 5:
                    await conn.execute(sql)
            await partitions.ensure(conn, [day])
            for request_id, org, team in rows:
                record = {"request_id": request_id, "user": "ann", "org": org, "team": team}
                await conn.execute(
                    "INSERT INTO usage_records (day, ts, request_id, record_id, user_id, model,"
                    " cost_usd, record) VALUES ($1, $2, $3, $3, 'ann', 'm', 0.5, $4::jsonb)",
                    day, moment, request_id, orjson.dumps(record).decode(),
                )  # fmt: skip
            await conn.execute(
                "INSERT INTO usage_daily (day, user_id, key_id, tier, model, provider, capability,"
                " requests, cost_usd) VALUES ($1, 'ann', '', '', 'm', '', '', 3, 1.5)",
                day,
            )
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.executemany(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                [(v, name) for v, name, _ in migrate.migrations() if v < 5],
            )
            assert await migrate.upgrade(conn) == ["0005_org_team.sql"]
            found = await conn.fetch("SELECT request_id, org, team FROM usage_records ORDER BY 1")
            assert [tuple(r) for r in found] == [(i, o or "", t or "") for i, o, t in rows]
            daily = await conn.fetch(
                "SELECT org, team, requests, cost_usd FROM usage_daily ORDER BY org"
            )
            assert [(r["org"], r["team"], r["requests"], float(r["cost_usd"])) for r in daily] == [
                ("", "", 1, 0.5),
                ("acme", "ml", 2, 1.0),
            ]
        finally:
            await conn.close()

    asyncio.run(scenario())
