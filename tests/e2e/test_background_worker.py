"""Under `gateway serve --workers N` one worker rolls the usage and ships the ledger, not N."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.serving import hold_lock
from tests.e2e.test_serve import KEY, Served
from tests.mock_upstream import MockUpstream
from tests.support import MOCK_KEY, free_port, routes_doc, tiers_doc

WAIT_S = 60


def test_the_lock_has_one_holder_until_it_exits(tmp_path: Path) -> None:
    path = str(tmp_path / "background.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, stdin=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == b"True\n"
        assert hold_lock(path) is False  # another process holds it
    finally:
        holder.stdin.close()  # the holder exits, and the kernel releases its lock
        holder.wait(timeout=WAIT_S)
    assert hold_lock(path) is True
    assert hold_lock(path) is False  # one holder, even within a process


HOLD = "import sys; from gateway.serving import hold_lock; print(hold_lock(sys.argv[1]), flush=True); sys.stdin.read()"  # noqa: E501


@pytest.fixture
def served(tmp_path: Path, upstream: MockUpstream) -> Iterator[Served]:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    argv += ["--port", str(free_port()), "--workers", "3"]
    env = {"MOCK_KEY": MOCK_KEY, "GATEWAY_KEYS": f"{KEY}=free:alice"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))
    server = Served(argv, env, tmp_path)
    yield server
    server.stop()


def workers(served: Served) -> list[int]:
    """The worker processes started so far, in order (uvicorn logs each)."""
    prefix = "Started server process ["
    return [
        int(line["msg"][len(prefix) : -1])
        for line in served.log_lines()
        if line.get("msg", "").startswith(prefix)
    ]


def background_workers(served: Served) -> list[int]:
    """The workers that took the background work, in order."""
    return [line["pid"] for line in served.log_lines() if line.get("event") == "background_worker"]


def wait_for_workers(served: Served, count: int) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while len(started := workers(served)) < count:
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.2)
    return started


def test_one_worker_of_three_takes_the_background_work_and_a_successor_takes_it_over(
    served: Served,
) -> None:
    started = wait_for_workers(served, 3)
    (holder,) = background_workers(served)
    assert holder in started

    # a worker that did not hold it dies: its replacement serves only
    other = next(pid for pid in started if pid != holder)
    os.kill(other, signal.SIGKILL)
    wait_for_workers(served, 4)
    assert background_workers(served) == [holder]

    # the holder dies: the worker started in its place holds it
    os.kill(holder, signal.SIGKILL)
    successor = wait_for_workers(served, 5)[-1]
    assert background_workers(served) == [holder, successor]
