"""Running uvicorn: one process, or workers under a supervisor that forgets dead workers.

With several workers one of them (the holder of a lock file) rolls the usage and ships the
ledger in its background; the others only serve."""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.applications import Starlette
from uvicorn import Config, Server
from uvicorn.supervisors.multiprocess import Multiprocess

from gateway.config.demo import demo_route_targets, with_demo
from gateway.config.load import load_config
from gateway.config.model import Config as ConfigModel
from gateway.config.runtime import Runtime
from gateway.config.targets import route_targets
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import mark_worker_dead
from gateway.secret import Secret

log = logging.getLogger("gateway")
GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (Python: 700)


@dataclass(frozen=True)
class AppFactory:
    """What each worker builds its app from, passed to it as an argument (uvicorn pickles its
    config, this included, for every spawned worker): the config directory is read there."""

    config_dir: str
    runtime: Runtime
    log_level: str = "INFO"
    demo_key: Secret | None = None  # `--demo`: the demo upstream, and this dev key (tier free)
    # several workers: the lock file whose holder alone rolls the usage and ships the ledger
    background_lock: str | None = None

    def __call__(self) -> Starlette:
        from gateway.app import create_app

        configure_logging(self.log_level)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app reloads on it
        runtime = self.runtime
        if self.background_lock is not None:
            if hold_lock(self.background_lock):
                log.info(
                    "the usage roller and the ledger shipper, where on, run in this worker only",
                    extra={"fields": {"event": "background_worker", "pid": os.getpid()}},
                )
            else:
                runtime = dataclasses.replace(runtime, roll_usage=False)
                # read from the environment by the ledger's settings; this worker's only
                os.environ["GATEWAY_LEDGER_SHIP"] = "0"
        source = functools.partial(load_serving_config, self.config_dir, self.demo_key)
        app = create_app(source(), runtime, config_source=source)
        _settle_garbage_collector()
        return app


def hold_lock(path: str) -> bool:
    """Whether this process took the exclusive lock on ``path`` (created if missing). It holds it
    until it exits: the descriptor stays open on purpose, and the kernel lets go of the lock
    when the process dies, so the worker started in place of a dead holder takes it over."""
    descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    return True


def load_serving_config(
    config_dir: str, demo_key: Secret | None, env: Mapping[str, str] | None = None
) -> ConfigModel:
    """The config as served: with ``demo_key``, demo mode (the demo upstream serving every
    route no upstream key serves, and the dev key added to ``GATEWAY_KEYS``'s)."""
    env = dict(os.environ if env is None else env)
    if demo_key is None:
        return load_config(config_dir, env)
    tier = demo_tier(config_dir, env)
    env["GATEWAY_KEYS"] = ",".join(
        filter(None, (env.get("GATEWAY_KEYS", ""), f"{demo_key.reveal()}={tier}:demo"))
    )
    return with_demo(load_config(config_dir, env))


def demo_tier(config_dir: str, env: Mapping[str, str]) -> str:
    """``free`` when the config has it, else its first tier."""
    tiers = list(load_config(config_dir, env).tiers)
    return "free" if "free" in tiers else tiers[0]


def log_route_targets(config_dir: str, demo: bool) -> None:
    """One line per route: the targets that can be tried, and why the others are skipped."""
    base = load_config(config_dir)
    for report in demo_route_targets(base) if demo else route_targets(base):
        fields = {
            "event": "route_targets",
            "tier": report.tier,
            "route": report.route,
            "usable": list(report.usable),
            "skipped": {model: reason for model, reason in report.skipped},
        }
        level = logging.INFO if report.usable else logging.WARNING
        log.log(level, report.describe(), extra={"fields": fields})


def _settle_garbage_collector() -> None:
    """Move what lives as long as the process (modules, config, the app) out of the cyclic
    collector's sight, and collect young objects less often: full collections walking those
    objects were the gateway's worst latency spikes (p99 at 16 connections halved)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, which also drops the live gauges (in-flight requests, open
    streams) of a worker it found dead: a worker killed outright never cleans up after itself,
    and its last values would be summed into every scrape forever."""

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                mark_worker_dead(pid)

    def handle_hup(self) -> None:
        """SIGHUP reloads the config in every worker (uvicorn's own would restart them)."""
        log.info("SIGHUP: the workers reload routes.yaml and tiers.yaml")
        for process in self.processes:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, not yet listening (``OSError`` when it cannot be):
    bound before anything is printed, so a taken port is the first and only thing said, and
    handed to uvicorn, which listens on it once the app is ready."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # the workers' processes serve it too
    return sock


class _Server(Server):
    """uvicorn's server, which says when it listens."""

    def __init__(self, config: Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_listening()


def run(config: Config, sock: socket.socket, on_listening: Callable[[], None]) -> bool:
    """Serve on ``sock`` (from ``bind``) until told to stop, calling ``on_listening`` once
    connections are accepted; False when a single process failed to start."""
    if config.workers > 1:
        sock.listen(config.backlog)  # connections wait there for the first worker up
        on_listening()
        Supervisor(config, sockets=[sock]).run()
        return True
    server = _Server(config, on_listening)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's way to say its start-up failed (it logged why)
        if server.started:
            raise
        return False
    return server.started
