"""Every shell command in README.md and docs/ runs, against a demo gateway, and succeeds.

The one rule for leaving a command out: its block is preceded by ``<!-- needs: ... -->`` (a real
provider key, Docker, or the test suite itself). The README's first command is run as written,
in a fresh virtualenv, by ``test_demo``; here it is checked to be that command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.first_run.process import Shell, copy_project
from tests.first_run.snippets import DOCS, ROOT, blocks, commands, first_command
from tests.support import free_port

ADMIN = "admin-token-for-doc-tests-0123456789abcdef"
DOCUMENTED_PORT = "8080"
DOCUMENTED_REDIS = "redis://127.0.0.1:6379/0"
# Blocks marked `needs`: kept few on purpose. Changing this list needs a reason.
SKIPPED = {
    "README.md": 3,  # the test suite itself; a real Together key (twice)
    "operations.md": 1,  # Docker
    "scaling.md": 1,  # a Kubernetes cluster (the offline renders and validations do run)
    "ledger.md": 1,  # a PostgreSQL server (tests/ledger/ runs these commands against its own)
    "providers.md": 1,  # a Stability key and a route not shipped (its tests use a mock)
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory, redis_server):
    """A demo gateway with the admin token and Redis, in a copy of the project."""
    tmp = tmp_path_factory.mktemp("docs")
    project = copy_project(tmp / "project")
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "GATEWAY_ADMIN_TOKEN": ADMIN,
        "REDIS_URL": redis_server.url,
    }
    shell = Shell(
        f"{sys.executable} -m gateway serve --demo --port {port}", project, env, tmp / "demo.log"
    )
    try:
        shell.wait_for(f"http://127.0.0.1:{port}/healthz")
        yield {"port": str(port), "key": shell.dev_key(), "env": env, "project": project}
    finally:
        shell.stop()


def localise(command: str, demo: dict) -> str:
    return command.replace(f"127.0.0.1:{DOCUMENTED_PORT}", f"127.0.0.1:{demo['port']}").replace(
        DOCUMENTED_REDIS, demo["env"]["REDIS_URL"]
    )


def run_command(command: str, demo: dict, tmp_path: Path) -> None:
    env = {**demo["env"], "KEY": demo["key"]}
    if "gateway serve" in command:
        port = free_port()
        command = command.replace(f"--port {DOCUMENTED_PORT}", f"--port {port}")
        assert f"--port {port}" in command, command
        shell = Shell(command, demo["project"], env, tmp_path / f"serve-{port}.log")
        try:
            shell.wait_for(f"http://127.0.0.1:{port}/healthz")
            assert "Traceback" not in shell.output()
        finally:
            shell.stop()
        return
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=demo["project"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{command}\n{output}"
    assert "Traceback" not in output, output
    if command.startswith("curl"):  # curl exits 0 on an HTTP error: look at the answer
        assert '{"error":' not in result.stdout, f"{command}\n{output}"


DOC_COMMANDS = [
    (path, command)
    for path in DOCS
    for index, command in enumerate(commands(path))
    if not (path.name == "README.md" and index == 0)
]


@pytest.mark.parametrize(
    "path,command",
    DOC_COMMANDS,
    ids=[f"{p.name}:{i}" for i, (p, _) in enumerate(DOC_COMMANDS)],
)
def test_documented_command_runs(path: Path, command: str, demo: dict, tmp_path: Path) -> None:
    run_command(localise(command, demo), demo, tmp_path)


def test_readme_python_examples_run(demo: dict) -> None:
    for block in blocks(ROOT / "README.md", "python"):
        result = subprocess.run(  # as written: the block reads KEY from the environment
            [sys.executable, "-c", localise(block, demo)],
            env={**demo["env"], "KEY": demo["key"]},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "demo" in result.stdout


def test_the_first_command_is_the_demo_and_few_blocks_are_skipped() -> None:
    assert first_command() == "pip install . && gateway serve --demo"
    for path in DOCS:
        marked = len(blocks(path, "bash", skipped=True)) + len(blocks(path, "python", skipped=True))
        assert marked == SKIPPED.get(path.name, 0), path


def test_the_readme_is_a_short_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 170  # a section per operator-facing feature, no more
    assert "tests/setup.sh && python -m pytest" in blocks(ROOT / "README.md", "bash", skipped=True)
    for link in (
        "usage",
        "configuration",
        "operations",
        "troubleshooting",
        "architecture",
        "providers",
        "scaling",
    ):
        assert f"(docs/{link}.md)" in readme
