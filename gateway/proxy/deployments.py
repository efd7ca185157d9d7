"""Deployments of one model: which to try first (the least loaded), per process.

A model with ``deployments`` in routes.yaml (other base URLs, regions or keys, each an
upstream) is tried deployment by deployment, each behind its own breaker, before the chain
moves on. The order is by expected wait: (requests in flight + 1) * the latency EWMA of
its successful attempts; a deployment never measured counts as 0 (it is tried, and so
measured), a failed attempt raises its EWMA to at least ``FAILURE_PENALTY_S``. Ties go round
robin. In flight counts an attempt until its answer opened (the first byte of a stream, the
whole body otherwise).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

from gateway.config.model import Model
from gateway.secret import Secret

ALPHA = 0.3  # weight of the newest latency in the EWMA
FAILURE_PENALTY_S = 1.0


class Balancer:
    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}
        self._ewma: dict[str, float] = {}
        self._turn = itertools.count()

    def order(self, model: Model) -> tuple[Model, ...]:
        """The deployments of ``model``, least loaded first; ``(model,)`` when it has none."""
        deployments = model.deployments
        if not deployments:
            return (model,)
        turn = next(self._turn) % len(deployments)
        rotated = deployments[turn:] + deployments[:turn]
        return tuple(sorted(rotated, key=self.load))

    def load(self, deployment: Model) -> float:
        key = deployment.breaker_key
        return (self._inflight.get(key, 0) + 1) * self._ewma.get(key, 0.0)

    def inflight(self, deployment: Model) -> int:
        return self._inflight.get(deployment.breaker_key, 0)

    def begin(self, deployment: Model) -> float:
        """An attempt starts; returns its start time (for ``end``)."""
        if deployment.deployment is None:
            return 0.0
        key = deployment.breaker_key
        self._inflight[key] = self._inflight.get(key, 0) + 1
        return time.perf_counter()

    def end(self, deployment: Model, began: float, ok: bool) -> None:
        """The attempt ended: successful ones feed the EWMA, failed ones raise it."""
        if deployment.deployment is None:
            return
        key = deployment.breaker_key
        self._inflight[key] = max(0, self._inflight.get(key, 0) - 1)
        seconds = time.perf_counter() - began
        previous = self._ewma.get(key)
        if not ok:
            self._ewma[key] = max(FAILURE_PENALTY_S, seconds, 2 * (previous or 0.0))
        elif previous is None:
            self._ewma[key] = seconds
        else:
            self._ewma[key] = previous + ALPHA * (seconds - previous)


def chain_keys(chain: tuple[Model, ...]) -> Iterator[Secret | None]:
    """The upstream key of every target of a chain, deployments included (to redact)."""
    for model in chain:
        for target in model.deployments or (model,):
            yield target.upstream.api_key


class ChainSecrets:
    """``own`` and ``chain_keys(chain)``, gathered each time they are iterated: only a failed
    attempt's text is redacted, so the usual request never walks the chain for them."""

    __slots__ = ("_chain", "_own")

    def __init__(self, own: Secret | None, chain: tuple[Model, ...]) -> None:
        self._own = own
        self._chain = chain

    def __iter__(self) -> Iterator[Secret | None]:
        yield self._own
        yield from chain_keys(self._chain)
