"""Where the CPU went during a scenario: per CPU, per benchmark process, and everyone else."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from procs import cpu_seconds


@dataclass
class CpuUsage:
    """Filled in when the ``cpu_usage`` block ends; percentages are of one core."""

    busy_pct: dict[str, float] = field(default_factory=dict)  # per CPU, from /proc/stat
    process_pct: dict[str, float] = field(default_factory=dict)  # per watched process group
    others_pct: float = 0.0  # busy time no benchmark process accounts for

    def as_dict(self) -> dict[str, object]:
        return {
            "cpu_busy_pct": self.busy_pct,
            "process_cpu_pct": self.process_pct,
            "others_cpu_pct": self.others_pct,
        }


@contextmanager
def cpu_usage(groups: Mapping[str, Sequence[int]]) -> Iterator[CpuUsage]:
    """CPU use over the block of each group of pids, of this harness and of its children
    that finished inside the block (wrk), and of the CPUs as a whole."""
    usage = CpuUsage()
    started = time.perf_counter()
    cpus_before = _cpu_times()
    groups_before = {name: cpu_seconds(list(pids)) for name, pids in groups.items()}
    self_before, children_before = _rusage(resource.RUSAGE_SELF), _rusage(resource.RUSAGE_CHILDREN)
    yield usage
    elapsed = time.perf_counter() - started
    usage.busy_pct = _busy(cpus_before, _cpu_times())
    spent = {
        name: cpu_seconds(list(groups[name])) - before for name, before in groups_before.items()
    }
    spent["harness"] = _rusage(resource.RUSAGE_SELF) - self_before
    spent["wrk"] = _rusage(resource.RUSAGE_CHILDREN) - children_before
    usage.process_pct = {name: _pct(seconds, elapsed) for name, seconds in spent.items()}
    usage.others_pct = round(
        max(0.0, sum(usage.busy_pct.values()) - sum(usage.process_pct.values())), 1
    )


def _pct(seconds: float, elapsed: float) -> float:
    return round(100.0 * seconds / elapsed, 1) if elapsed else 0.0


def _rusage(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _busy(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    busy: dict[str, float] = {}
    for cpu, (idle, total) in after.items():
        idle0, total0 = before.get(cpu, (0, 0))
        spent = total - total0
        busy[cpu] = round(100.0 * (1 - (idle - idle0) / spent), 1) if spent else 0.0
    return busy


def _cpu_times() -> dict[str, tuple[int, int]]:
    """CPU name → (idle + iowait ticks, all ticks) from /proc/stat."""
    times: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                name, *fields = line.split()
                values = [int(x) for x in fields]
                idle = values[3] + (values[4] if len(values) > 4 else 0)
                times[name.removeprefix("cpu")] = (idle, sum(values[:8]))
    return times
