"""The issue's targets, each computed from the scenario results of one run."""

from __future__ import annotations

from collections.abc import Callable

from report import Report, Target, difference, error_sum

GATEWAY_LOAD_SCENARIOS = ("chat_c1", "chat_c16", "chat_c64", "stream_c16")


def _value(section: str, key: str) -> Callable[[Report], float | None]:
    def measure(report: Report) -> float | None:
        holder = report.memory if section == "memory" else report.facts.get(section, {})
        value = holder.get(key)
        return float(value) if isinstance(value, int | float) else None

    return measure


TARGETS = (
    Target("chat_c16_rps", 2500, True, lambda r: r.get("chat_c16", "rps")),
    Target(
        "chat_added_p50_ms_c1",
        0.5,
        False,
        lambda r: difference(r, "chat_c1", "direct_chat_c1", "p50_ms"),
        "gateway p50 minus the mock's own p50, one connection",
    ),
    Target("chat_c64_p99_ms", 40, False, lambda r: r.get("chat_c64", "p99_ms")),
    Target(
        "chat_and_stream_errors",
        0,
        False,
        lambda r: error_sum(r, GATEWAY_LOAD_SCENARIOS),
    ),
    Target("stream_c16_rps", 1800, True, lambda r: r.get("stream_c16", "rps")),
    Target(
        "stream_added_ttfb_p50_ms",
        1.0,
        False,
        lambda r: difference(r, "ttfb_gateway", "ttfb_direct", "p50_ms"),
        "sequential streamed requests, Python client: gateway minus direct",
    ),
    Target("slow_streams_errors", 0, False, lambda r: error_sum(r, ("slow_streams",))),
    Target(
        "slow_stream_memory_kib",
        40,
        False,
        _value("memory", "per_stream_kib"),
        "(gateway RSS with the streams open - idle RSS) / open streams",
    ),
    Target(
        "slow_relay_delay_p99_ms",
        5,
        False,
        lambda r: r.get("slow_streams", "p99_ms"),
        "receive time minus the upstream's send stamp, every chunk",
    ),
    Target(
        "slow_relay_delay_steady_p99_ms",
        5,
        False,
        _value("relay", "steady_p99_ms"),
        "the same, only chunks received while >= 95% of the streams were open (no start/end storm)",
    ),
    Target(
        "workers_scaling",
        0.8,
        True,
        _value("workers", "scaling"),
        "rps with N workers / (N x rps with one worker)",
    ),
)
