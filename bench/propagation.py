"""How long a control-plane change takes to apply on another `gateway serve` process.

    python bench/propagation.py [--samples 30] [--cluster]

Starts a redis-server (or a one-node Redis Cluster: no pub/sub there, the version poll
carries the change), the mock upstream and two gateway processes A and B. Per sample: create
a client key through A's admin API, then poll B (one keep-alive connection, back to back)
until the key is accepted; then revoke it through A and poll B until it is refused. Prints
min / median / p95 / max of both, in milliseconds, measured from A's answer to B's first
changed answer (so they include one poll round trip).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.control.two_gateways import ADMIN, two_gateways  # noqa: E402
from tests.mock_upstream import running_mock_upstream  # noqa: E402
from tests.redis_fixture import RedisServer  # noqa: E402

BODY = {"model": "ok", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def wait_status(http: httpx.Client, url: str, key: str, status: int, since: float) -> float:
    headers = {"authorization": f"Bearer {key}"}
    while http.post(url, json=BODY, headers=headers).status_code != status:
        if time.perf_counter() - since > 10:
            raise SystemExit("no propagation within 10 s")
    return (time.perf_counter() - since) * 1000


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name:<8} n={len(values)}  min {ordered[0]:.1f} ms  median "
        f"{statistics.median(ordered):.1f} ms  p95 {p95:.1f} ms  max {ordered[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--cluster", action="store_true", help="one-node Redis Cluster")
    args = parser.parse_args()
    admin = {"authorization": f"Bearer {ADMIN}"}
    created: list[float] = []
    revoked: list[float] = []
    with (
        RedisServer(cluster=args.cluster) as redis,
        running_mock_upstream() as upstream,
        tempfile.TemporaryDirectory() as directory,
    ):
        redis.start()
        with (
            two_gateways(Path(directory), upstream.base_url, redis.url) as (a, b),
            httpx.Client(timeout=10) as http,
        ):
            for index in range(args.samples):
                answer = http.post(
                    a.url + "/v1/admin/keys",
                    headers=admin,
                    json={"user": f"bench-{index}", "tier": "free"},
                )
                since = time.perf_counter()
                key, key_id = answer.json()["key"], answer.json()["id"]
                url = b.url + "/v1/chat/completions"
                created.append(wait_status(http, url, key, 200, since))
                http.delete(f"{a.url}/v1/admin/keys/{key_id}", headers=admin)
                since = time.perf_counter()
                revoked.append(wait_status(http, url, key, 401, since))
    store = "Redis Cluster (version poll)" if args.cluster else "Redis (pub/sub + poll)"
    print(f"control-plane propagation A -> B, {store}")
    print(summary("create", created))
    print(summary("revoke", revoked))


if __name__ == "__main__":
    main()
