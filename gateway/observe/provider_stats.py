"""Recent outcomes per upstream model, for the operator view."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 100


@dataclass
class _Recent:
    outcomes: deque[tuple[bool, float]] = field(default_factory=lambda: deque(maxlen=WINDOW))


class ProviderStats:
    def __init__(self) -> None:
        self._recent: dict[str, _Recent] = {}

    def record(self, model: str, ok: bool, seconds: float) -> None:
        recent = self._recent.get(model)
        if recent is None:  # not setdefault: that would build a deque on every call
            recent = self._recent[model] = _Recent()
        recent.outcomes.append((ok, seconds))

    def summary(self, model: str) -> dict[str, float | int | None]:
        recent = self._recent.get(model)
        outcomes = list(recent.outcomes) if recent else []
        if not outcomes:
            return {"recent_attempts": 0, "error_rate": None, "latency_p50_ms": None}
        latencies = sorted(seconds for _, seconds in outcomes)
        errors = sum(1 for ok, _ in outcomes if not ok)
        return {
            "recent_attempts": len(outcomes),
            "error_rate": round(errors / len(outcomes), 4),
            "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        }
