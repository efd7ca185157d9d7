"""Start, pin, watch and stop the benchmark's processes; read their CPUs and memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HELPER = "multiprocessing.resource_tracker"


@dataclass(frozen=True)
class Started:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessGroup:
    """Owns every process it starts; ``close`` stops them all (on errors and Ctrl-C too).

    Each process gets its own session, so stopping it also stops the workers it forked
    (uvicorn's, nginx's) and a Ctrl-C in the terminal reaches only this harness.
    """

    def __init__(self, workdir: Path, pin: bool) -> None:
        self._workdir = workdir
        self._pin = pin
        self._started: list[Started] = []

    @property
    def workdir(self) -> Path:
        return self._workdir

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: str | None,
        env: Mapping[str, str] | None = None,
    ) -> Started:
        command = list(argv)
        if self._pin and cpus is not None:
            command = ["taskset", "-c", cpus, *command]
        log_path = self._workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        started = Started(name, popen, log_path)
        self._started.append(started)
        return started

    def stop(self, proc: Started, timeout_s: float = 10.0) -> None:
        if proc in self._started:
            self._started.remove(proc)
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        _signal_group(proc, signal.SIGKILL)  # leftovers of its session (forked workers)

    def close(self) -> None:
        for proc in reversed(list(self._started)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def _signal_group(proc: Started, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def wait_for_port(port: int, proc: Started, timeout_s: float = 30.0) -> None:
    """Until something accepts on 127.0.0.1:port; fails early when ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on port {port} in {timeout_s:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_field(pid: int, field: str) -> str:
    """One line of /proc/<pid>/status, e.g. ``VmRSS`` or ``Cpus_allowed_list``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def rss_kib(pid: int) -> int:
    value = status_field(pid, "VmRSS")
    return int(value.split()[0]) if value else 0


def cpus_of(pid: int) -> str:
    return status_field(pid, "Cpus_allowed_list")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (uvicorn's workers, nginx's worker), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found.extend(children)
        pending.extend(children)
    return found


def leaf_processes(pid: int) -> list[int]:
    """The processes that do the work: the workers if ``pid`` forked any, else ``pid``.

    multiprocessing's resource tracker (started beside uvicorn's workers) is not a worker.
    """
    children = [child for child in descendants(pid) if HELPER not in cmdline(child)]
    return children or [pid]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as raw:
            return raw.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
