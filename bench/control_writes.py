"""Control-plane writes with N run-time keys stored: creates/s and a user PUT's latency.

    python bench/control_writes.py [N]      (default 2000; run from the repository root)

Seeds N key documents straight into a fresh redis-server, serves one gateway in-process, then
times 100 ``POST /v1/admin/keys`` and 20 ``PUT /v1/me/upstream-keys/mock`` back to back.
"""

import base64
import hashlib
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.secret import Secret
from gateway.store.factory import create_store
from tests.redis_fixture import RedisServer
from tests.support import ThreadedServer, build_config, routes_doc, tiers_doc

os.environ["GATEWAY_SECRET_KEY"] = base64.b64encode(bytes(range(32))).decode()
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
ADMIN = "bench-admin-token-0123456789-abcdefghij"
with RedisServer() as server:
    server.start()
    r = redis.Redis(port=server.port)
    pipe = r.pipeline()
    for i in range(N):
        doc = {
            "user": f"u{i}",
            "tier": "free",
            "name": None,
            "models": None,
            "expires_at": None,
            "budget_usd": {},
            "rpm": None,
            "tpm": None,
            "max_parallel": None,
            "metadata": {},
            "created_at": time.time(),
            "created_by": "seed",
            "secrets": [
                {"sha256": hashlib.sha256(secrets.token_bytes(16)).hexdigest(), "until": None}
            ],
        }
        pipe.hset("{gw:cp}:kind:keys", f"key_{i:016x}", json.dumps(doc))
    pipe.sadd("{gw:cp}:kinds", "keys")
    pipe.incr("{gw:cp}:version")
    pipe.execute()
    config = build_config(
        routes_doc("http://127.0.0.1:9/v1"),
        tiers_doc(),
        {"GATEWAY_KEYS": "sk-bench-client-0123456789=free:alice"},
    )
    runtime = Runtime(redis_url=server.url, admin_token=Secret(ADMIN))
    app = create_app(
        config, runtime, metrics=Metrics(), store=create_store(server.url, config.settings)
    )
    gw = ThreadedServer(app, gateway=True).start()
    try:
        h = {"authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=gw.url, headers=h, timeout=30) as c:
            for _ in range(5):
                c.post("/v1/admin/keys", json={"user": "warm", "tier": "free"})
            t = time.perf_counter()
            n = 100
            for i in range(n):
                assert (
                    c.post("/v1/admin/keys", json={"user": f"b{i}", "tier": "free"}).status_code
                    == 201
                )
            el = time.perf_counter() - t
            print(f"keys={N}: {n / el:.1f} creates/s")
            c.put("/v1/admin/settings", json={"allow_user_keys": True})
            lat = []
            for i in range(20):
                t = time.perf_counter()
                resp = c.put(
                    "/v1/me/upstream-keys/mock",
                    json={"key": f"sk-user-own-key-{i:04d}-abcdef"},
                    headers={"authorization": "Bearer sk-bench-client-0123456789"},
                )
                lat.append((time.perf_counter() - t) * 1000)
                assert resp.status_code == 200, resp.text
            print(f"keys={N}: user PUT median {statistics.median(lat):.1f} ms")
    finally:
        gw.stop()
