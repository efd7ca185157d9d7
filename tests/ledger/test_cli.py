"""`gateway db upgrade`, `gateway usage export` and `gateway ledger ship` against the ledger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gateway.ledger.db import Database
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from tests.ledger.scenario import wait_complete
from tests.ledger.test_shipper import START, add, drain, record
from tests.redis_fixture import RedisServer
from tests.support import free_port, routes_doc, tiers_doc


def gateway(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_db_upgrade_then_export_from_the_ledger(
    tmp_path: Path, redis: RedisServer, database_url: str
) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    env = {"DATABASE_URL": database_url, "REDIS_URL": "", "MOCK_KEY": "sk-x"}
    first = gateway("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_usage_ledger.sql" in first.stdout
    again = gateway("db", "upgrade", env=env, cwd=tmp_path)
    assert again.stdout.strip() == "up to date"

    async def ship() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        try:
            await add(client, [record(n, user="carol" if n % 2 else "dave") for n in range(6)])
            await drain(Shipper(LedgerSettings(database_url=database_url), db, client))
        finally:
            await db.aclose()
            await client.aclose()

    asyncio.run(ship())
    day = str(int(START))
    out = gateway(
        "usage", "export", "--from", day, "--to", str(int(START) + 60), "--format", "json",
        "--user", "carol", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [r["request_id"] for r in orjson.loads(out.stdout)] == [
        "req_00000001",
        "req_00000003",
        "req_00000005",
    ]
    missing = gateway("db", "upgrade", env={"DATABASE_URL": ""}, cwd=tmp_path)
    assert missing.returncode == 1 and "DATABASE_URL is not set" in missing.stderr


def test_the_ship_command_ships_until_stopped(
    tmp_path: Path, redis: RedisServer, database_url: str
) -> None:
    """`gateway ledger ship` (its own Deployment in deploy/k8s/components/ledger): it ships
    what the serving processes wrote, serves its metrics, and SIGTERM (the pod stopped) ends
    it with status 0."""
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    root = str(Path(__file__).resolve().parents[2])
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis.url, "MOCK_KEY": "sk-x"}
    assert gateway("db", "upgrade", env=env, cwd=tmp_path).returncode == 0  # tables to count
    port = free_port()
    argv = ["ledger", "ship", "--config-dir", str(tmp_path), "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *argv],
        env={**os.environ, **env, "PYTHONPATH": root},
        stderr=subprocess.PIPE,
    )

    async def added_then_shipped() -> int:
        client = Redis.from_url(redis.url)
        try:
            await add(client, [record(n) for n in range(5)])
        finally:
            await client.aclose()
        return await wait_complete(database_url, 5, timeout_s=60)

    try:
        assert asyncio.run(added_then_shipped()) == 5
        assert proc.poll() is None  # still running: it ships until stopped
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
        }
        # what the ledger's alerts read (deploy/prometheus/alerts.yml), from this process
        assert samples["gateway_ledger_rows_shipped_total"] == 5
        assert samples["gateway_ledger_failures_total"] == 0
        assert "gateway_ledger_lag_records" in samples
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
