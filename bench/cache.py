"""A response-cache hit against the mock-upstream round trip, in the same run and process.

    python bench/cache.py [--requests N]

Starts the mock upstream (tests/mock_upstream.py) and the gateway (memory store) with the text
route cached, then times N sequential non-streamed chat requests of each kind through the
gateway: ``hit`` (served from the cache) and ``upstream`` (``x-gateway-cache: no-store``: the
same request forwarded to the mock and back). Prints p50/p90 per kind and the p50 ratio (the
issue's target: a hit at least 3x faster). A loaded machine shrinks the ratio; run it alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from tests.mock_upstream import running_mock_upstream
from tests.support import (
    DEFAULT_ROUTES,
    ThreadedServer,
    build_config,
    routes_doc,
    tiers_doc,
)

KEY = "sk-bench-cache-0123456789"
BODY = {"model": "text", "messages": [{"role": "user", "content": "cache bench"}]}


def timed(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.post(url, json=BODY, headers=headers)
        seconds.append(time.perf_counter() - started)
        answer.raise_for_status()
    return seconds


def summary(name: str, seconds: list[float]) -> float:
    ordered = sorted(seconds)
    p50, p90 = statistics.median(ordered), ordered[int(len(ordered) * 0.9)]
    print(f"kind={name} requests={len(seconds)} p50_ms={p50 * 1000:.2f} p90_ms={p90 * 1000:.2f}")
    return p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with running_mock_upstream() as upstream:
        tiers = tiers_doc({"free": {"routes": DEFAULT_ROUTES, "cache": {"text": {"ttl_s": 600}}}})
        config = build_config(
            routes_doc(upstream.base_url), tiers, {"GATEWAY_KEYS": f"{KEY}=free:bench"}
        )
        server = ThreadedServer(create_app(config, Runtime(), metrics=Metrics())).start()
        try:
            url = server.url + "/v1/chat/completions"
            auth = {"authorization": f"Bearer {KEY}"}
            with httpx.Client(timeout=10) as client:
                timed(client, url, auth, 20)  # warm up, and fill the entry
                bypass = {**auth, "x-gateway-cache": "no-store"}
                timed(client, url, bypass, 20)
                hit = summary("hit", timed(client, url, auth, args.requests))
                miss = summary("upstream", timed(client, url, bypass, args.requests))
        finally:
            server.stop()
    print(f"ratio_p50={miss / hit:.2f} target>=3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
