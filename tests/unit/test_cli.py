"""The command line: options reach the command they belong to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import CONFIG_DIR_ENV, main
from tests.support import routes_doc, tiers_doc


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid config in its own directory; the working directory holds none."""
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    monkeypatch.setenv("MOCK_KEY", "sk-mock")
    monkeypatch.setenv("OTHER_KEY", "sk-other")
    return directory


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_check_reads_the_config_dir_given_on_either_side_of_the_command(
    config_dir: Path, before: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    option = ["--config-dir", str(config_dir)]
    argv = [*option, "check"] if before else ["check", *option]
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("ok: 2 upstreams")


def test_check_without_a_config_dir_reads_the_working_directory(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 1  # the working directory has no config
    assert capsys.readouterr().err
