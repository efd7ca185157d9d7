"""Collect results, print the documented lines, and build the JSON summary with targets."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"scenario={self.name} rps={self.rps:.1f} p50_ms={self.p50_ms:.3f} "
            f"p99_ms={self.p99_ms:.3f} errors={self.errors}"
        )


@dataclass(frozen=True)
class Target:
    """One goal of the issue: how to compute it from the results, and the bound."""

    name: str
    bound: float
    at_least: bool  # True: measured >= bound; False: measured <= bound
    measure: Callable[[Report], float | None]
    note: str = ""

    def evaluate(self, report: Report) -> dict[str, Any]:
        measured = self.measure(report)
        met = None
        if measured is not None:
            met = measured >= self.bound if self.at_least else measured <= self.bound
        entry: dict[str, Any] = {
            "target": f"{'>=' if self.at_least else '<='} {self.bound:g}",
            "measured": None if measured is None else round(measured, 3),
            "met": met,
            "distance": None if measured is None else round(measured - self.bound, 3),
        }
        if self.note:
            entry["note"] = self.note
        return entry


@dataclass
class Report:
    """Everything one run found; printing happens as results arrive."""

    machine: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, result: ScenarioResult) -> ScenarioResult:
        self.scenarios[result.name] = result
        print(result.line(), flush=True)
        return result

    def add_memory(self, **values: Any) -> None:
        self.memory.update(values)
        print("memory " + " ".join(f"{k}={_fmt(v)}" for k, v in values.items()), flush=True)

    def add_facts(self, kind: str, **values: Any) -> None:
        self.facts.setdefault(kind, {}).update(values)
        print(f"{kind} " + " ".join(f"{k}={_fmt(v)}" for k, v in values.items()), flush=True)

    def add_process(self, name: str, pid: int, cpus: str) -> None:
        self.machine.setdefault("processes", []).append({"name": name, "pid": pid, "cpus": cpus})
        print(f"process name={name} pid={pid} cpus={cpus}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def get(self, name: str, attribute: str) -> float | None:
        result = self.scenarios.get(name)
        return None if result is None else float(getattr(result, attribute))

    def summary(self, targets: Sequence[Target]) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "targets": {target.name: target.evaluate(self) for target in targets},
            "scenarios": {
                name: {k: _rounded(v) for k, v in asdict(result).items() if k != "name"}
                for name, result in self.scenarios.items()
            },
            "memory": _rounded(self.memory),
            "facts": _rounded(self.facts),
            "notes": self.notes,
        }

    def print_summary(self, targets: Sequence[Target]) -> None:
        print("summary:", flush=True)
        print(json.dumps(self.summary(targets), sort_keys=False, default=str), flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    return str(value).replace(" ", "_")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def difference(report: Report, name: str, reference: str, attribute: str) -> float | None:
    measured, base = report.get(name, attribute), report.get(reference, attribute)
    return None if measured is None or base is None else measured - base


def error_sum(report: Report, names: Sequence[str]) -> float | None:
    present = [report.scenarios[n].errors for n in names if n in report.scenarios]
    return float(sum(present)) if present else None
