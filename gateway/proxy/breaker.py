"""A circuit breaker per upstream model: closed → open after repeated failures → half-open probe."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from gateway.config.model import BreakerPolicy


class State(IntEnum):  # values are what the gateway_circuit_state gauge exports
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class _Circuit:
    failures: deque[float] = field(default_factory=deque)
    opened_at: float | None = None
    probing: bool = False  # a half-open probe is in flight
    probe_started: float = 0.0


class Breakers:
    """Per-process breaker states keyed by model name; the clock is injectable.

    ``on_open`` hears every opening (model, cooldown seconds), to tell the other replicas;
    ``shared_open`` says whether another replica's breaker has the model open: a model closed
    here is then reported (and skipped) as open. Without them, each process is on its own.
    """

    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        *,
        on_open: Callable[[str, float], None] | None = None,
        shared_open: Callable[[str], bool] | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._on_open = on_open
        self._shared_open = shared_open

    def state(self, model: str) -> State:
        circuit = self._circuits.get(model)
        if circuit is None or circuit.opened_at is None:
            if self._shared_open is not None and self._shared_open(model):
                return State.OPEN
            return State.CLOSED
        if self._clock() - circuit.opened_at >= self._policy.cooldown_s:
            return State.HALF_OPEN
        return State.OPEN

    def allow(self, model: str) -> bool:
        """May a request go to ``model`` now? In half-open, only one probe at a time."""
        circuit = self._circuits.get(model)
        if circuit is None or circuit.opened_at is None:  # not open here: no ``state`` call
            return self._shared_open is None or not self._shared_open(model)
        state = self.state(model)
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            return False
        circuit = self._circuits[model]
        now = self._clock()
        if circuit.probing and now - circuit.probe_started < self._policy.probe_timeout_s:
            return False
        circuit.probing, circuit.probe_started = True, now
        return True

    def record_success(self, model: str) -> None:
        circuit = self._circuits.get(model)
        if circuit is not None:
            circuit.failures.clear()
            circuit.opened_at = None
            circuit.probing = False

    def record_started(self, model: str) -> None:
        """An answer relayed as it comes has started: a probe's first byte closes the circuit;
        otherwise the verdict waits for the answer's end (``record_success``/``_failure``)."""
        circuit = self._circuits.get(model)
        if circuit is not None and (circuit.probing or circuit.opened_at is not None):
            self.record_success(model)

    def record_failure(self, model: str) -> None:
        circuit = self._circuits.setdefault(model, _Circuit())
        now = self._clock()
        if circuit.probing or circuit.opened_at is not None:
            circuit.opened_at, circuit.probing = now, False  # failed probe: open again
            self._opened(model)
            return
        circuit.failures.append(now)
        while circuit.failures and now - circuit.failures[0] > self._policy.window_s:
            circuit.failures.popleft()
        if len(circuit.failures) >= self._policy.failures:
            circuit.opened_at = now
            circuit.failures.clear()
            self._opened(model)

    def _opened(self, model: str) -> None:
        if self._on_open is not None:
            self._on_open(model, self._policy.cooldown_s)

    def release_probe(self, model: str) -> None:
        """A probe that ended without a verdict (client went away) frees the half-open slot."""
        circuit = self._circuits.get(model)
        if circuit is not None:
            circuit.probing = False

    def states(self) -> dict[str, State]:
        return {model: self.state(model) for model in self._circuits}

    def probe_age(self, model: str) -> float | None:
        """Seconds the half-open probe of ``model`` has been in flight; None when none is."""
        circuit = self._circuits.get(model)
        if circuit is None or not circuit.probing:
            return None
        return self._clock() - circuit.probe_started
