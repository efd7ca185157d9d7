"""Optional dependencies are optional at import: with asyncpg (the ``postgres`` extra) not
importable, every command works until the ledger is configured, and configuring it says in one
line which extra to install. asyncpg is installed here (the test extra), so each process below
runs with a finder on ``sys.meta_path`` that refuses it, as a core-only install would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.first_run.process import ROOT, Shell
from tests.support import free_port

BLOCKER = '''
import sys


class NotInstalled:
    """asyncpg as a core-only install has it: absent."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "asyncpg":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''
MISSING = (
    "gateway: error: DATABASE_URL is set, so the usage ledger needs asyncpg, which is not "
    "installed: pip install 'llm-gateway[postgres]'"
)
LEDGER_URL = "postgresql://gateway@127.0.0.1:5432/gateway"


@pytest.fixture
def core_only(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import asyncpg (sitecustomize runs at start-up)."""
    site = tmp_path / "core-only"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{site}{os.pathsep}{ROOT}",
    }


def gateway(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_blocker_works(core_only: dict[str, str]) -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import asyncpg"], env=core_only, capture_output=True, text=True
    )
    assert found.returncode == 1 and "No module named 'asyncpg'" in found.stderr


def test_only_the_ledgers_postgres_modules_need_asyncpg(core_only: dict[str, str]) -> None:
    """Every module of the package imports without asyncpg but those of the ledger that talk
    to Postgres, and those fail naming the extra (not a bare ModuleNotFoundError)."""
    script = """
import importlib, pkgutil, gateway
failed = {}
for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
    if module.name == "gateway.__main__":  # it runs the command line
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as error:
        failed[module.name] = str(error)
for name, error in sorted(failed.items()):
    print(name, "|", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=core_only, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    failed = dict(line.split(" | ", 1) for line in done.stdout.splitlines())
    assert {"gateway.app", "gateway.cli", "gateway.http.services"}.isdisjoint(failed)
    assert failed, "no module needs asyncpg: the blocker did not run"
    for name, error in failed.items():
        assert name.startswith("gateway.ledger."), (name, error)
        assert error == MISSING.removeprefix("gateway: error: "), (name, error)


def test_check_and_schema_work_without_asyncpg(core_only: dict[str, str]) -> None:
    checked = gateway(core_only, "check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: ")
    assert gateway(core_only, "schema").returncode == 0


def test_serve_demo_answers_without_asyncpg(core_only: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    shell = Shell(
        f"{sys.executable} -m gateway serve --demo --port {port}",
        ROOT,
        core_only,
        tmp_path / "serve.log",
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        assert shell.wait_for(base_url + "/readyz", timeout=60).status_code == 200
        reply = httpx.post(
            base_url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {shell.dev_key()}"},
            json={"model": "text", "messages": [{"role": "user", "content": "Hello"}]},
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-gateway-provider"] == "demo"
        assert "Traceback" not in shell.output()
    finally:
        shell.stop()


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--demo", "--port", "0"],
        ["check"],
        ["db", "upgrade"],
        ["ledger", "ship"],
        ["usage", "export", "--from", "2026-11-01", "--to", "2026-11-30"],
    ],
    ids=" ".join,
)
def test_the_ledger_configured_without_its_extra_is_one_line(
    core_only: dict[str, str], argv: list[str]
) -> None:
    done = gateway({**core_only, "DATABASE_URL": LEDGER_URL}, *argv)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].endswith(MISSING.removeprefix("gateway: error: "))
    if argv[0] != "check":  # (check lists problems without the prefix)
        assert done.stderr.strip() == MISSING
    assert "Dev key" not in done.stdout  # it fails before the banner
    assert "Traceback" not in done.stderr
