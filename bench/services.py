"""Start the benchmark's servers: redis-server, the nginx mock, the slow upstream, the gateway."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mock_nginx
from aio import run_loop
from http_client import Target, measure_ttfb
from procs import ProcessGroup, Started, cpus_of, free_port, leaf_processes, rss_kib, wait_for_port
from setup_tools import ensure_binaries, raise_fd_limit

BENCH_DIR = Path(__file__).resolve().parent
CONFIG_DIR = BENCH_DIR / "config"
SLOW_SERVER = BENCH_DIR / "slow_upstream.py"
CHAT_PATH = "/v1/chat/completions"
TIER = "bench"


@dataclass(frozen=True)
class Layout:
    """Which CPUs each process gets: the gateway on CPU 0, everything else on CPU 1."""

    cores: int
    pin: bool

    @property
    def load_cpus(self) -> str | None:
        return "1" if self.pin else None

    def gateway_cpus(self, workers: int) -> str | None:
        if not self.pin:
            return None
        return "0" if workers <= 1 else f"0-{min(workers, self.cores) - 1}"


def load_machine() -> tuple[dict[str, str], Layout]:
    """The load's tools (installed when missing), a raised fd limit, and the CPU layout,
    with this harness (wrk's parent, the Python client) pinned to the load's CPU."""
    tools = ensure_binaries(["nginx", "wrk", "redis-server", "taskset"])
    raise_fd_limit(65536)
    cores = os.cpu_count() or 1
    layout = Layout(cores, pin=cores >= 2)
    if layout.pin:
        os.sched_setaffinity(0, {1})
    return tools, layout


@dataclass(frozen=True)
class Mocks:
    nginx: Started
    nginx_port: int
    slow: Started
    slow_port: int
    redis: Started
    redis_url: str

    def json_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}{mock_nginx.JSON_PATH}"

    def sse_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}{mock_nginx.SSE_PATH}"

    def otel_env(self, sampler: str, ratio: str = "") -> dict[str, str]:
        """Tracing on, its spans exported to nginx (which drops them) with ``sampler``."""
        return {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": (
                f"http://127.0.0.1:{self.nginx_port}{mock_nginx.OTLP_TRACES_PATH}"
            ),
            "OTEL_TRACES_SAMPLER": sampler,
            "OTEL_TRACES_SAMPLER_ARG": ratio,
        }

    def upstream_env(self) -> dict[str, str]:
        """The base URLs bench/config reads (the gateway appends /chat/completions)."""
        base = f"http://127.0.0.1:{self.nginx_port}"
        return {
            "BENCH_JSON_URL": base + mock_nginx.JSON_PATH.removesuffix("/chat/completions"),
            "BENCH_SSE_URL": base + mock_nginx.SSE_PATH.removesuffix("/chat/completions"),
            "BENCH_SLOW_URL": f"http://127.0.0.1:{self.slow_port}/v1",
        }


@dataclass(frozen=True)
class RunningGateway:
    proc: Started
    port: int
    workers: int
    key: str

    def pids(self) -> list[int]:
        return leaf_processes(self.proc.pid)

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def url(self, path: str = CHAT_PATH) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def target(self) -> Target:
        return Target("127.0.0.1", self.port, CHAT_PATH, self.key)


def start_mocks(procs: ProcessGroup, tools: Mapping[str, str], layout: Layout) -> Mocks:
    workdir = procs.workdir
    redis_port, nginx_port, slow_port = free_port(), free_port(), free_port()
    redis = procs.start(
        "redis",
        [tools["redis-server"], "--port", str(redis_port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        cpus=layout.load_cpus,
    )  # fmt: skip
    conf = mock_nginx.write_config(workdir / "nginx", nginx_port)
    nginx = procs.start("nginx", mock_nginx.nginx_argv(tools["nginx"], conf), cpus=layout.load_cpus)
    slow = procs.start(
        "slow_upstream",
        [sys.executable, str(SLOW_SERVER), "--port", str(slow_port)],
        cpus=layout.load_cpus,
    )
    for proc, port in ((redis, redis_port), (nginx, nginx_port), (slow, slow_port)):
        wait_for_port(port, proc)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    return Mocks(nginx, nginx_port, slow, slow_port, redis, redis_url)


@dataclass(frozen=True)
class GatewaySpec:
    workers: int = 1
    log_level: str = "WARNING"
    transport: str = "native"
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment, applied last
    name: str = ""  # the process's name in logs (default: from workers and log level)


def start_gateway(
    procs: ProcessGroup, mocks: Mocks, layout: Layout, key: str, spec: GatewaySpec
) -> RunningGateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    env.update(mocks.upstream_env())
    env.update(
        REDIS_URL=mocks.redis_url,
        GATEWAY_KEYS=f"{key}={TIER}:bench-user",
        GATEWAY_LOG_LEVEL=spec.log_level,
        GATEWAY_UPSTREAM_TRANSPORT=spec.transport,
    )
    env.update(spec.env)
    env.setdefault("PYTHONPATH", str(BENCH_DIR.parent))
    # -P: ``-m`` would put the working directory first on the path, ahead of PYTHONPATH, and an
    # A/B run started in one tree would run that tree's code for both
    argv = [sys.executable, "-P", "-m", "gateway", "serve", "--config-dir", str(CONFIG_DIR),
            "--port", str(port), "--workers", str(spec.workers)]  # fmt: skip
    name = spec.name or f"gateway_w{spec.workers}_{spec.log_level.lower()}"
    proc = procs.start(name, argv, cpus=layout.gateway_cpus(spec.workers), env=env)
    wait_for_port(port, proc)
    gateway = RunningGateway(proc, port, spec.workers, key)
    wait_until_serving(gateway)
    return gateway


def start_floor(
    procs: ProcessGroup, mocks: Mocks, layout: Layout, transport: str
) -> tuple[Started, int]:
    """bench/floor_app.py under uvicorn like the gateway, pinned like one gateway worker."""
    port = free_port()
    env = {**os.environ, **mocks.upstream_env(), "GATEWAY_UPSTREAM_TRANSPORT": transport}
    argv = [sys.executable, "-m", "uvicorn", "floor_app:create_app", "--factory",
            "--app-dir", str(BENCH_DIR), "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = procs.start("floor", argv, cpus=layout.gateway_cpus(1), env=env)
    wait_for_port(port, proc)
    return proc, port


def wait_until_serving(gateway: RunningGateway, timeout_s: float = 30.0) -> None:
    """A JSON and a streamed chat through every layer (auth, routing, Redis, upstream)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if gateway.proc.popen.poll() is not None:
            break
        last = smoke_error(gateway.target())
        if not last and len(gateway.pids()) >= gateway.workers:
            return
        time.sleep(0.2)
    raise RuntimeError(f"gateway is not serving: {last}\n{gateway.proc.log_tail()}")


def smoke_error(target: Target) -> str:
    """'' when a JSON and a streamed request both succeed, else what went wrong."""
    for model, stream in (("bench-json", False), ("bench-sse", True)):
        try:
            result = run_loop(measure_ttfb(target, chat_body(model, stream), 1, stream))
        except OSError as error:
            return repr(error)
        if result.errors:
            return f"{model}: {result.last_error}"
    return ""


def chat_body(model: str, stream: bool, **extra: object) -> bytes:
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in one short sentence."},
        ],
        "stream": stream,
        "max_tokens": 64,
        **extra,
    }
    return json.dumps(body).encode()


def describe_cpus(proc: Started) -> str:
    """``0`` for one process; ``pid:cpus,...`` for each worker of a forking one."""
    leaves = leaf_processes(proc.pid)
    if leaves == [proc.pid]:
        return cpus_of(proc.pid)
    return ",".join(f"{pid}:{cpus_of(pid)}" for pid in leaves)


def scrape_metrics(gateway: RunningGateway) -> dict[str, float]:
    """Sums of the gateway's Prometheus counters that show the load went through it."""
    with urllib.request.urlopen(gateway.url("/metrics"), timeout=10) as answer:
        text = answer.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("gateway_requests_total", "gateway_tokens_total", "gateway_cost_usd_total"):
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def metering_facts(redis_url: str) -> dict[str, int]:
    """What metering left in Redis: keys and usage records."""
    import redis

    try:
        from gateway.store.keys import USAGE_STREAM as stream
    except ImportError:
        stream = "gw:usage"
    client = redis.Redis.from_url(redis_url)
    try:
        return {"redis_keys": int(client.dbsize()), "usage_records": int(client.xlen(stream))}
    finally:
        client.close()
