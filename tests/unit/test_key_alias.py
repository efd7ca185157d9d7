"""TOGETHER_AI_API_KEY (the integration plan's name) is read as an alias of TOGETHER_API_KEY."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.config_files import check
from gateway.config.load import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_the_alias_supplies_the_together_key() -> None:
    together = load_config(ROOT, env={"TOGETHER_AI_API_KEY": "sk-plan"}).upstreams["together"]
    assert together.api_key is not None and together.api_key.reveal() == "sk-plan"
    assert together.api_key_source == "TOGETHER_AI_API_KEY"


def test_the_configured_name_wins_over_the_alias() -> None:
    env = {"TOGETHER_AI_API_KEY": "sk-plan", "TOGETHER_API_KEY": "sk-own"}
    together = load_config(ROOT, env=env).upstreams["together"]
    assert together.api_key is not None and together.api_key.reveal() == "sk-own"
    assert together.api_key_source == "TOGETHER_API_KEY"


@pytest.mark.parametrize(
    ("variable", "says"),
    [
        ("TOGETHER_AI_API_KEY", "key read from TOGETHER_AI_API_KEY (an alias of TOGETHER_API_KEY)"),
        ("TOGETHER_API_KEY", "key read from TOGETHER_API_KEY\n"),
    ],
)
def test_check_says_which_variable_it_used(
    variable: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "sk-secret-value-123")
    assert check(str(ROOT)) == 0
    err = capsys.readouterr().err
    assert f"note: upstream together: {says}" in err
    assert "api_key_env TOGETHER_API_KEY is unset" not in err
    assert "TOGETHER_AI_API_KEY is set but no upstream" not in err
    assert "sk-secret-value-123" not in err
