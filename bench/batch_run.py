"""A 10,000-line batch through one gateway: wall time, lines/s, and interactive latency meanwhile.

Starts its own redis-server, a delayed JSON upstream (``json_upstream.py``) and
``python -m gateway serve``; uploads the batch with the openai SDK, polls it to the end while one
client sends interactive chat requests back to back, and prints the figures (baseline latency
first, with no batch running).

    PYTHONPATH=. python bench/batch_run.py [--lines 10000] [--delay-ms 30] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai

KEY = "sk-bench-batch-0123456789"
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def config(root: Path, upstream: int) -> None:
    (root / "routes.yaml").write_text(
        f"upstreams:\n  json: {{base_url: 'http://127.0.0.1:{upstream}/v1', connect_timeout_s: 5,\n"
        "    first_byte_timeout_s: 30, idle_timeout_s: 60}\n"
        "models:\n  bench-json: {upstream: json, model: mock-json, modality: text,\n"
        "    price: {input: 0.10, output: 0.20}}\n"
    )
    (root / "tiers.yaml").write_text(
        "tiers:\n  bench: {routes: {text: [bench-json]}, batch_price_percent: 50}\n"
    )


def latencies(url: str, stop: threading.Event, into: list[float]) -> None:
    body = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(headers={"authorization": f"Bearer {KEY}"}, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.post(url + "/v1/chat/completions", json=body).raise_for_status()
            into.append((time.perf_counter() - started) * 1000)


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"n={len(values)} p50={statistics.median(values):.1f} ms p99={p99:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--delay-ms", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    redis_port, upstream_port, gateway_port = free_port(), free_port(), free_port()
    config(root, upstream_port)
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "GATEWAY_KEYS": f"{KEY}=bench:bench-user",
        "GATEWAY_FILES_DIR": str(root / "files"),
        "GATEWAY_BATCH_CONCURRENCY": str(args.concurrency),
        "GATEWAY_BATCH_USER_CONCURRENCY": str(args.concurrency),
    }
    log = (root / "gateway.log").open("wb")
    processes = [
        subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "json_upstream.py"),
                "--port",
                str(upstream_port),
                "--delay-ms",
                str(args.delay_ms),
            ],
            cwd=HERE,
        ),
    ]
    try:
        wait_port(redis_port)
        wait_port(upstream_port)
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    "serve",
                    "--config-dir",
                    str(root),
                    "--port",
                    str(gateway_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_port(gateway_port)
        url = f"http://127.0.0.1:{gateway_port}"
        time.sleep(1)
        baseline: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=latencies, args=(url, stop, baseline))
        probe.start()
        time.sleep(5)
        stop.set()
        probe.join()
        api = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        lines = io.BytesIO()
        for n in range(args.lines):
            body = {"model": "text", "messages": [{"role": "user", "content": f"line {n}"}]}
            item = {"custom_id": f"l{n}", "method": "POST", "url": "/v1/chat/completions"}
            lines.write(json.dumps({**item, "body": body}).encode() + b"\n")
        uploaded = api.files.create(file=("bench.jsonl", lines.getvalue()), purpose="batch")
        during: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=latencies, args=(url, stop, during))
        started = time.perf_counter()
        batch = api.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        probe.start()
        while batch.status not in ("completed", "failed", "cancelled", "expired"):
            time.sleep(0.5)
            batch = api.batches.retrieve(batch.id)
        wall = time.perf_counter() - started
        stop.set()
        probe.join()
        counts = batch.request_counts
        print(f"batch: {args.lines} lines, status {batch.status}, counts {counts}")
        print(f"wall {wall:.1f} s, {args.lines / wall:.0f} lines/s "
              f"(concurrency {args.concurrency}, upstream delay {args.delay_ms} ms)")  # fmt: skip
        print(f"interactive chat, no batch:     {summary(baseline)}")
        print(f"interactive chat, batch running: {summary(during)}")
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
