"""A real ``redis-server`` for tests: a free port, no persistence, stoppable and restartable.

``RedisServer(cluster=True)`` starts a one-node Redis Cluster that owns every slot, so the
cluster client's same-slot rules (hash tags, CROSSSLOT) are exercised against a real server.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
BUS_OFFSET = 10000  # a cluster node's bus listens on its port + 10000


def free_port(*, with_bus: bool = False) -> int:
    """A free TCP port; ``with_bus`` also needs port + 10000 free (Redis Cluster's bus).

    A cluster node's two ports are both taken below the kernel's ephemeral range: there, any
    outgoing connection of any test may be given the bus port between our check and the
    node's bind, and the node then exits at start ("redis did not become ready" in CI)."""
    if with_bus:
        return _port_pair_below_ephemeral()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _port_pair_below_ephemeral() -> int:
    first_ephemeral = _ephemeral_range()[0]
    top = first_ephemeral - BUS_OFFSET  # the bus port (port + 10000) stays below the range
    choices = list(range(max(1024, top - 6000), top))
    random.shuffle(choices)
    for port in choices:
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError(f"no free port pair below {first_ephemeral}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command over a raw socket (RESP) and return the raw reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        reply = sock.recv(65536)
        if reply.startswith(b"$"):
            length = int(reply[1 : reply.index(b"\r\n")])
            while len(reply) < length + len(b"$\r\n\r\n"):
                reply += sock.recv(65536)
        return reply


class RedisServer:
    """One ``redis-server`` process; ``stop()`` and ``start()`` keep the same port."""

    def __init__(self, *, cluster: bool = False) -> None:
        self.port = free_port(with_bus=cluster)
        self.cluster = cluster
        self._dir = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.cluster:
            return f"redis+cluster://127.0.0.1:{self.port}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", self._dir.name]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            Path(self._dir.name, "nodes.conf").unlink(missing_ok=True)
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for(lambda: command(self.port, "PING").startswith(b"+PONG"))
        if self.cluster:
            command(self.port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            self._wait_for(lambda: b"cluster_state:ok" in command(self.port, "CLUSTER", "INFO"))
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def flushall(self) -> None:
        command(self.port, "FLUSHALL")

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _wait_for(self, ready: Callable[[], bool], timeout: float = 10.0) -> None:
        wait_for(ready, timeout, f"redis-server on port {self.port}", self._process)


def wait_for(
    ready: Callable[[], bool],
    timeout: float = 20.0,
    what: str = "redis",
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``ready`` (an OSError counts as not yet) until true; fail when ``process`` exits or
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready")
        time.sleep(0.02)
