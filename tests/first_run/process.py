"""Start a gateway command as a real process, wait for it, read what it printed."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEV_KEY = re.compile(r"sk-demo-[A-Za-z0-9_\-]+")
# What `pip install .` needs from the working tree.
PROJECT_FILES = ("pyproject.toml", "README.md", "routes.yaml", "tiers.yaml", "gateway", "deploy")


def copy_project(target: Path) -> Path:
    """The project as a fresh checkout holds it (no build leftovers in the shared tree)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    return target


class Shell:
    """``bash -c command`` in ``cwd`` with exactly ``env``; output to a file."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the gateway is bash's child: stop the whole group
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, url: str, timeout: float = 120) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}:\n{self.output()}")
            try:
                return httpx.get(url, timeout=2)
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"{url} never answered:\n{self.output()}")

    def dev_key(self) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = DEV_KEY.search(self.output())
            if found:
                return found.group(0)
            time.sleep(0.05)
        raise AssertionError("no dev key printed:\n" + self.output())

    def stop(self) -> None:
        if self.process.poll() is None:
            import os

            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
