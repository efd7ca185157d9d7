"""Running uvicorn: one process, or workers under a supervisor that forgets dead workers."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from starlette.applications import Starlette
from uvicorn import Config, Server
from uvicorn.supervisors.multiprocess import Multiprocess

from gateway.config.runtime import Runtime
from gateway.observe.logs import configure_logging
from gateway.observe.metrics import mark_worker_dead

GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (Python: 700)


@dataclass(frozen=True)
class AppFactory:
    """What each worker builds its app from, passed to it as an argument (uvicorn pickles its
    config, this included, for every spawned worker): the config directory is read there."""

    config_dir: str
    runtime: Runtime
    log_level: str = "INFO"

    def __call__(self) -> Starlette:
        from gateway.app import create_app
        from gateway.config.load import load_config

        configure_logging(self.log_level)
        app = create_app(load_config(self.config_dir), self.runtime)
        _settle_garbage_collector()
        return app


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


def run(config: Config) -> bool:
    """Serve until told to stop (``uvicorn.run`` for a prepared config); False when a single
    process failed to start."""
    server = Server(config)
    if config.workers > 1:
        Supervisor(config, sockets=[config.bind_socket()]).run()
        return True
    server.run()
    return server.started
