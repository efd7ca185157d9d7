"""Optional (``--compare-litellm``): the same load against LiteLLM's proxy and the same nginx mock.

LiteLLM is installed into its own venv (``bench/.venv-litellm``) so it never touches the
gateway's environment. Its config mirrors bench/config as far as LiteLLM allows without a
database: the same two models, a master key, per-deployment rpm/tpm limits tracked in the same
redis-server. Per-user budgets need Postgres and its Prometheus callback is an enterprise
feature, so neither is on: LiteLLM does less work per request than the gateway here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from http_client import Target
from phases import Bench, show_process
from procs import Started, free_port, leaf_processes, wait_for_port
from scenarios import Load, ttfb_scenario, wrk_scenario
from services import CHAT_PATH, Mocks, smoke_error

INSTALL_TIMEOUT_S = 900


def litellm_phase(bench: Bench, venv: Path) -> None:
    try:
        binary = ensure_litellm(venv)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        bench.report.note(f"litellm: skipped, install failed: {error}")
        return
    try:
        proc, port = start_litellm(bench, binary)
    except RuntimeError as error:
        bench.report.note(f"litellm: skipped, it did not start: {error}")
        return
    show_process(bench.report, proc)
    url = f"http://127.0.0.1:{port}{CHAT_PATH}"
    key = bench.key
    loads = [
        Load("litellm_chat_c1", url, 1, key=key),
        Load("litellm_chat_c16", url, 16, key=key),
        Load("litellm_chat_c64", url, 64, key=key),
        Load("litellm_stream_c16", url, 16, "bench-sse", True, key),
    ]
    watch = bench.watch(litellm=leaf_processes(proc.pid))
    for load in loads:
        wrk_scenario(bench.report, bench.knobs, load, watch)
    target = Target("127.0.0.1", port, CHAT_PATH, key)
    ttfb_scenario(bench.report, bench.knobs, "litellm_ttfb", target, watch)
    bench.procs.stop(proc)


def ensure_litellm(venv: Path) -> Path:
    binary = venv / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"setup: installing litellm[proxy] into {venv} (optional part)", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0 or not binary.exists():
        lines = (done.stderr or done.stdout or "no litellm binary").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"pip exited {done.returncode}")
    return binary


def write_config(workdir: Path, mocks: Mocks, key: str) -> Path:
    redis = urlparse(mocks.redis_url)
    models = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{upstream_model}",
                "api_base": base,
                "api_key": "sk-mock",
                "rpm": 1_000_000_000,
                "tpm": 1_000_000_000_000,
            },
        }
        for name, upstream_model, base in (
            ("bench-json", "mock-json", mocks.upstream_env()["BENCH_JSON_URL"]),
            ("bench-sse", "mock-sse", mocks.upstream_env()["BENCH_SSE_URL"]),
        )
    ]
    config = {
        "model_list": models,
        "general_settings": {"master_key": key},
        "litellm_settings": {"drop_params": True},
        "router_settings": {"redis_host": redis.hostname, "redis_port": redis.port},
    }
    path = workdir / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def start_litellm(bench: Bench, binary: Path) -> tuple[Started, int]:
    port = free_port()
    config = write_config(bench.procs.workdir, bench.mocks, bench.key)
    env = {"PATH": f"{binary.parent}:/usr/bin:/bin", "LITELLM_LOG": "ERROR", "HOME": "/tmp"}
    argv = [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    proc = bench.procs.start("litellm", argv, cpus=bench.layout.gateway_cpus(1), env=env)
    wait_for_port(port, proc, timeout_s=180)
    target = Target("127.0.0.1", port, CHAT_PATH, bench.key)
    deadline = time.monotonic() + 60
    while (error := smoke_error(target)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if error:
        bench.procs.stop(proc)
        raise RuntimeError(f"{error}\n{proc.log_tail()}")
    return proc, port
