"""tiers.yaml ``ledger:``: parsed and validated like every section; ``GATEWAY_LEDGER_*`` win."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config.env_checks import runtime_problems
from gateway.config.load import load_config
from gateway.config.model import LedgerOptions
from gateway.config.reader import ConfigError
from gateway.config.runtime import Runtime
from gateway.config.schema import config_schema
from gateway.ledger.settings import LedgerSettings
from tests.conftest import StartGateway
from tests.redis_fixture import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def config_dir(tmp_path: Path, ledger: Any) -> Path:
    """The shipped files, tiers.yaml's ``ledger:`` replaced (None: removed)."""
    tiers = yaml.safe_load((ROOT / "tiers.yaml").read_text())
    tiers.pop("ledger", None)
    if ledger is not None:
        tiers["ledger"] = ledger
    (tmp_path / "routes.yaml").write_text((ROOT / "routes.yaml").read_text())
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return tmp_path


def test_the_section_is_parsed(tmp_path: Path) -> None:
    options = {
        "retention_days": 90,
        "rollup_retention_days": 365,
        "ship": False,
        "auto_migrate": False,
        "batch": 250,
        "claim_idle_ms": 5000,
        "stream_cap": 2_000_000,
    }
    ledger = load_config(config_dir(tmp_path, options), env={}).ledger
    assert ledger == LedgerOptions(
        retention_days=90,
        rollup_retention_days=365,
        ship=False,
        auto_migrate=False,
        batch=250,
        claim_idle_ms=5000,
        stream_cap=2_000_000,
    )
    settings = LedgerSettings.from_env({"DATABASE_URL": "postgresql://h/db"}, ledger)
    assert (settings.retention_days, settings.ship, settings.batch) == (90, False, 250)
    assert settings.database_url == "postgresql://h/db"


def test_without_the_section_the_defaults_are_the_envs_defaults(tmp_path: Path) -> None:
    ledger = load_config(config_dir(tmp_path, None), env={}).ledger
    assert ledger == LedgerOptions()
    assert LedgerSettings.from_env({}, ledger) == LedgerSettings.from_env({}) == LedgerSettings()
    assert LedgerSettings().retention_days == 400
    assert LedgerSettings().rollup_retention_days == 800


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    ledger = load_config(
        config_dir(tmp_path, {"retention_days": 90, "ship": False, "stream_cap": 5}), env={}
    ).ledger
    env = {
        "GATEWAY_LEDGER_RETENTION_DAYS": "30",
        "GATEWAY_LEDGER_SHIP": "1",
        "GATEWAY_LEDGER_ROLLUP_RETENTION_DAYS": "0",
    }
    settings = LedgerSettings.from_env(env, ledger)
    assert settings.retention_days == 30  # env over file
    assert settings.ship is True  # env over file
    assert settings.rollup_retention_days == 0  # env over the default
    assert settings.stream_cap == 5  # file, no variable
    assert settings.database_url is None  # DATABASE_URL comes from the env only
    assert LedgerSettings.from_env({"GATEWAY_LEDGER_SHIP": ""}, ledger).ship is False


def test_database_url_is_not_a_file_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir(tmp_path, {"database_url": "postgresql://u:secret@h/db"}), env={})
    assert any("tiers.yaml: ledger.database_url: unknown key" in p for p in raised.value.problems)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"retention_days": -1}, "ledger.retention_days: must be >= 0, got -1"),
        ({"rollup_retention_days": "long"}, "ledger.rollup_retention_days: expected an integer"),
        ({"batch": 0}, "ledger.batch: must be >= 1, got 0"),
        ({"claim_idle_ms": 10}, "ledger.claim_idle_ms: must be >= 100, got 10"),
        ({"stream_cap": 0}, "ledger.stream_cap: must be >= 1, got 0"),
        ({"ship": "yes"}, "ledger.ship: expected true or false"),
        ({"retention": 30}, "ledger.retention: unknown key"),
        ([30], "ledger: expected a mapping"),
    ],
)
def test_bad_values_are_problems(tmp_path: Path, options: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(config_dir(tmp_path, options), env={})
    assert any(p.startswith(f"tiers.yaml: {problem}") for p in raised.value.problems), (
        raised.value.problems
    )


def gateway_check(directory: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config-dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_gateway_check_names_the_bad_key_and_the_bad_variable(tmp_path: Path) -> None:
    bad_file = gateway_check(config_dir(tmp_path, {"retention_days": -5}))
    assert "tiers.yaml: ledger.retention_days: must be >= 0, got -5" in bad_file
    bad_env = gateway_check(config_dir(tmp_path, None), GATEWAY_LEDGER_BATCH="many")
    assert "GATEWAY_LEDGER_BATCH: expected a whole number >= 1, got 'many'" in bad_env


def test_the_environments_problems() -> None:
    assert runtime_problems({"GATEWAY_LEDGER_RETENTION_DAYS": "0"}) == []
    assert runtime_problems({"GATEWAY_LEDGER_CLAIM_IDLE_MS": "50"}) == [
        "GATEWAY_LEDGER_CLAIM_IDLE_MS: expected a whole number >= 100, got '50'"
    ]


def test_every_schema_key_is_accepted_by_the_loader(tmp_path: Path) -> None:
    schema = config_schema()["tiers.yaml"]["properties"]["ledger"]["properties"]
    sample = {
        key: False if s["type"] == "boolean" else s.get("minimum", 0) + 7
        for key, s in schema.items()
    }
    ledger = load_config(config_dir(tmp_path, sample), env={}).ledger
    assert set(schema) == set(vars(ledger))
    assert all(getattr(ledger, key) == value for key, value in sample.items())


def test_rollups_are_kept_at_least_as_long_as_the_records() -> None:
    assert LedgerSettings(retention_days=30, rollup_retention_days=60).rollup_days_kept == 60
    assert LedgerSettings(retention_days=30, rollup_retention_days=10).rollup_days_kept == 30
    assert LedgerSettings(retention_days=0, rollup_retention_days=10).rollup_days_kept == 0
    assert LedgerSettings(retention_days=30, rollup_retention_days=0).rollup_days_kept == 0


@pytest.mark.parametrize(("variable", "shipping"), [(None, False), ("1", True)])
def test_a_gateway_reads_the_file_under_the_environment(
    start_gateway: StartGateway,
    redis: RedisServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    variable: str | None,
    shipping: bool,
) -> None:
    """``ledger: {ship: false}`` stops this process's shipper; GATEWAY_LEDGER_SHIP=1 wins."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    if variable is not None:
        monkeypatch.setenv("GATEWAY_LEDGER_SHIP", variable)
    running = start_gateway(
        runtime=Runtime(redis_url=redis.url), tiers_extra={"ledger": {"ship": False}}
    )
    assert httpx.get(f"{running.url}/readyz").json()["ledger"]["shipping"] is shipping
