"""Hot reload of routes.yaml and tiers.yaml: validate, swap, and tell every other process.

``reload`` reads both files again; a config with problems is refused (the messages ``gateway
check`` prints) and the one in force stays. A valid one goes to ``swap``, which builds the
parts that depend on the config and puts them in place at once: requests already running
keep the parts they started with. Triggers: ``SIGHUP`` (the supervisor forwards it to each
worker), ``POST /v1/admin/reload`` (which also bumps the ``config`` document of kind
``settings``), and a bump seen in the control plane's snapshot, made by another worker or
replica: each process then reloads from its own files.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config.model import Config
from gateway.config.reader import ConfigError
from gateway.control.plane import ControlPlane, Snapshot

KIND, DOCUMENT = "settings", "config"
log = logging.getLogger("gateway.control")


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    problems: tuple[str, ...] = ()
    generation: int = 0
    summary: str = ""


class Reloader:
    """Serialises reloads of one process; ``load`` reads the files (raises ``ConfigError``)."""

    def __init__(
        self, control: ControlPlane, load: Callable[[], Config], swap: Callable[[Config], None]
    ) -> None:
        self._control = control
        self._load = load
        self._swap = swap
        self._lock = asyncio.Lock()
        self._seen: int | None = None  # the generation this process last followed
        self.reloads = 0  # successful reloads of this process
        self._tasks: set[asyncio.Task[ReloadResult]] = set()

    async def reload(self, *, actor: str, announce: bool) -> ReloadResult:
        """Reload from the files; with ``announce``, every other process follows."""
        async with self._lock:
            try:
                config = self._load()
            except ConfigError as error:
                log.error("reload refused (%s): %s", actor, "; ".join(error.problems))
                return ReloadResult(False, tuple(error.problems))
            self._swap(config)
            self.reloads += 1
            generation = _generation(self._control.snapshot)
            if announce:
                generation += 1
                self._seen = generation
                document = {"generation": generation, "reloaded_at": time.time(), "by": actor}
                await self._control.put(KIND, DOCUMENT, document, actor=actor, action="reload")
            summary = (
                f"{len(config.upstreams)} upstreams, {len(config.models)} models, "
                f"{len(config.tiers)} tiers, {len(config.keys)} keys"
            )
            log.info("config reloaded (%s): %s", actor, summary)
            return ReloadResult(True, (), generation, summary)

    def follow(self, snapshot: Snapshot) -> None:
        """A snapshot callback: reload when another process bumped the generation."""
        generation = _generation(snapshot)
        if self._seen is None:  # the first snapshot: what this process started with
            self._seen = generation
            return
        if generation != self._seen:
            self._seen = generation
            self._spawn(f"generation {generation}")

    def install_sighup(self) -> bool:
        """Reload on SIGHUP (main thread only; False where signals cannot be caught)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (ValueError, RuntimeError, NotImplementedError, AttributeError):
            return False
        return True

    def _on_sighup(self) -> None:
        self._spawn("SIGHUP")

    def _spawn(self, actor: str) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(actor=actor, announce=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _generation(snapshot: Snapshot) -> int:
    value: Any = snapshot.kind(KIND).get(DOCUMENT, {}).get("generation", 0)
    return value if isinstance(value, int) else 0
