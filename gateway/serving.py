"""Running uvicorn: one process, or workers under a supervisor that forgets dead workers."""

from __future__ import annotations

from uvicorn import Config, Server
from uvicorn.supervisors.multiprocess import Multiprocess

from gateway.observe.metrics import mark_worker_dead


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
