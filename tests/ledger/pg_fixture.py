"""A real PostgreSQL for tests: ``initdb`` + ``pg_ctl`` on a free port, no system service.

Debian's ``postgresql`` package puts ``initdb`` in ``/usr/lib/postgresql/<version>/bin``; the
server refuses to run as root, so as root it runs as the ``postgres`` user (``runuser``) in a
temporary directory that user owns. fsync is off: test data need not survive a power cut.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.redis_fixture import free_port


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


class PostgresServer:
    """One cluster; ``stop()`` and ``start()`` keep its port and data."""

    def __init__(self, cpus: str | None = None) -> None:
        self.cpus = cpus  # taskset CPU list for the server (None: not pinned; benchmarks pin)
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.data = self._root / "data"
        self.sockets = self._root / "sock"
        self.log = self._root / "server.log"
        self._as_postgres = os.geteuid() == 0
        self.running = False
        self._initdb()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, pin: bool = False) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        if pin and self.cpus:
            prefix = ["taskset", "-c", self.cpus, *prefix]  # the server inherits the CPUs
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def _initdb(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._as_postgres:
            shutil.chown(self._root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        initdb = pg_bin("initdb")
        assert initdb, "initdb not found: run tests/setup.sh (installs postgresql)"
        self._run(
            initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> PostgresServer:
        if self.running:
            return self
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl
        self._run(
            pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start",
            pin=True,
        )  # fmt: skip
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)
