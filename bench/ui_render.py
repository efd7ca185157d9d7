"""Server time to render the dashboard's overview and a filtered 30-day analytics page.

    python bench/ui_render.py [--records 1000000] [--samples 20]

Starts a redis-server, writes ``--records`` usage records into the usage stream (spread over
the last 30 days: 200 users with 300 keys, 3 tiers, 8 models on 2 providers, 4 capabilities,
~3% errors, 20% tagged), folds them into the rollups once (the catch-up a fresh deployment
does; timed), then renders the pages in process (ASGI, no network) with an admin session and
prints min / median / p95 of the server time per page, in milliseconds. Each page request
also runs the roller's check for new records (nothing new here).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
from redis import Redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.app import create_app  # noqa: E402
from gateway.config.runtime import Runtime  # noqa: E402
from gateway.http.admin.auth import SESSION_COOKIE  # noqa: E402
from gateway.observe.metrics import Metrics  # noqa: E402
from gateway.store import keys  # noqa: E402
from gateway.store.factory import create_store  # noqa: E402
from gateway.ui.session import Sessions  # noqa: E402
from gateway.usage.rollup import Roller  # noqa: E402
from tests.redis_fixture import RedisServer  # noqa: E402
from tests.support import build_config, routes_doc, tiers_doc  # noqa: E402

MODELS = [(f"model-{i}", "together" if i % 2 else "openai") for i in range(8)]
CAPABILITIES = ("text_generation", "code_generation", "embeddings", "vision_analysis")
TIERS = ("free", "pro", "enterprise")


def records(count: int, now: float) -> Iterator[bytes]:
    rng = random.Random(7)
    for i in range(count):
        user = rng.randrange(200)
        model, provider = MODELS[rng.randrange(8)]
        status = 200 if rng.random() > 0.03 else rng.choice((429, 502))
        ts = now - 30 * 86_400 + 30 * 86_400 * i / count
        record = {
            "time": "", "ts": round(ts, 3), "request_id": f"req-{i}",
            "user": f"user-{user}", "key_id": f"key-{user}-{rng.randrange(2) if user < 100 else 0}",
            "tier": TIERS[user % 3], "capability": CAPABILITIES[int(model[-1]) % 4],
            "model": model, "provider": provider, "upstream_model": model,
            "prompt_tokens": rng.randrange(10, 2000), "completion_tokens": rng.randrange(1, 800),
            "total_tokens": 0, "images": 0, "audio_ms": 0, "video_ms": 0,
            "cost_usd": round(rng.random() / 100, 6), "fallback": rng.random() < 0.02,
            "byok": False, "status": status, "latency_ms": round(rng.lognormvariate(6, 0.6), 1),
            "attempts": 1, "estimated": False, "usage_flagged": False,
            "tags": [f"team-{rng.randrange(5)}"] if rng.random() < 0.2 else [],
        }  # fmt: skip
        yield orjson.dumps(record)


def load_stream(url: str, count: int, now: float) -> float:
    client = Redis.from_url(url)
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i, raw in enumerate(records(count, now), start=1):
        pipe.xadd(keys.USAGE_STREAM, {"r": raw}, maxlen=count + 1, approximate=True)
        if i % 20_000 == 0:
            pipe.execute()
    pipe.execute()
    client.close()
    return time.perf_counter() - started


async def measure(url: str, count: int, samples: int) -> None:
    now = time.time()
    print(f"writing {count:,} records into the stream...", flush=True)
    print(f"  {load_stream(url, count, now):.1f} s")
    config = build_config(routes_doc("http://127.0.0.1:9"), tiers_doc(), {})
    store = create_store(url, config.settings)
    started = time.perf_counter()
    folded = await Roller(store, time.time).run_once()
    print(f"rollup catch-up: {folded:,} records folded in {time.perf_counter() - started:.1f} s")
    app = create_app(config, Runtime(redis_url=url), store=store, metrics=Metrics())
    session_id, _ = await Sessions(store).create("bench", "admin")
    start = int(now - 30 * 86_400)
    pages = {
        "overview (24h/7d/30d, by model/provider/tier)": "/ui/overview",
        "overview 30d": "/ui/overview?period=30d",
        "analytics 30d, user filter": f"/ui/analytics?start={start}&user=user-42",
        "analytics 30d, model+status filter": (
            f"/ui/analytics?start={start}&model=model-3&status=error&group_by=tier"
        ),
        "analytics 30d, tag filter by key": (
            f"/ui/analytics?start={start}&tag=team-2&group_by=key_id"
        ),
    }
    transport = httpx.ASGITransport(app=app)
    cookies = {SESSION_COOKIE: session_id}
    async with httpx.AsyncClient(transport=transport, base_url="http://ui", cookies=cookies) as c:
        for name, path in pages.items():
            times = []
            for _ in range(samples):
                began = time.perf_counter()
                answer = await c.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200, answer.text[:300]
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(
                f"{name:45s} min {times[0]:7.1f}  median {statistics.median(times):7.1f}"
                f"  p95 {p95:7.1f} ms"
            )
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        asyncio.run(measure(server.url, args.records, args.samples))
    finally:
        server.close()


if __name__ == "__main__":
    main()
