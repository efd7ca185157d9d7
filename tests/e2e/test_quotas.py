"""Quotas and usage through the gateway against a real redis-server."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.config.runtime import Runtime
from tests.support import DEFAULT_ROUTES, MOCK_KEY, free_port, routes_doc, tiers_doc

MESSAGES = [{"role": "user", "content": "hello there"}]
QUOTA_TIERS = {
    "free": {
        "routes": DEFAULT_ROUTES,
        "max_tokens": 10,
        "quotas": {"text_generation": {"requests_per_day": 50, "tokens_per_day": 60}},
    },
    "burst": {
        "routes": DEFAULT_ROUTES,
        "quotas": {"text_generation": {"requests_per_day": 50}},
    },
    "flaky": {
        "routes": {"text": ["fail-500"]},
        "quotas": {"text_generation": {"requests_per_day": 5}},
    },
}
ADMIN = "admin-token-for-tests-123"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def gw(start_gateway, redis, clock):
    from gateway.secret import Secret

    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    return start_gateway(QUOTA_TIERS, runtime=runtime, clock=clock)


def client(gw, tier="free", **headers):
    return openai.OpenAI(
        base_url=gw.base_url, api_key=gw.key(tier), max_retries=0, default_headers=headers or None
    )


def quota(gw, tier="free"):
    response = httpx.get(
        gw.base_url + "/quota", headers={"authorization": f"Bearer {gw.key(tier)}"}
    )
    assert response.status_code == 200
    return response.json()["capabilities"]["text_generation"]


def settled(gw, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("stream", [False, True])
def test_token_quota_is_exact_and_reconciled_to_real_usage(gw, stream):
    spent = 0
    statuses = []
    with client(gw) as sdk:
        for _ in range(20):
            try:
                if stream:
                    chunks = list(
                        sdk.chat.completions.create(
                            model="text",
                            messages=MESSAGES,
                            stream=True,
                            stream_options={"include_usage": True},
                        )
                    )
                    spent += chunks[-1].usage.total_tokens
                else:
                    spent += sdk.chat.completions.create(
                        model="text", messages=MESSAGES
                    ).usage.total_tokens
                statuses.append(200)
            except openai.RateLimitError as error:
                statuses.append(429)
                assert error.code == "quota_exceeded"
                assert "text_generation" in error.message
                assert int(error.response.headers["retry-after"]) > 0
                break
            assert settled(gw, lambda spent=spent: quota(gw)["tokens"]["used"] == spent)
    assert statuses[-1] == 429 and statuses.count(200) >= 5
    view = quota(gw)["tokens"]
    assert view["used"] == spent <= view["limit"] == 60


def test_rate_limit_headers_on_every_response(gw):
    with client(gw) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(model="text", messages=MESSAGES)
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "50"
    assert h["x-ratelimit-remaining-requests"] == "49"
    assert h["x-ratelimit-limit-tokens"] == "60"
    assert "x-ratelimit-reset-requests" in h and "x-ratelimit-reset-tokens" in h


def test_a_failed_request_gives_its_reservation_back(gw, upstream):
    with client(gw, "flaky") as sdk, pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(model="text", messages=MESSAGES)
    assert settled(gw, lambda: quota(gw, "flaky")["requests"]["used"] == 0)


def test_byok_counts_the_request_but_not_tokens(gw, upstream):
    with client(gw, **{"x-upstream-api-key": "sk-own-key-123456"}) as sdk:
        sdk.chat.completions.create(model="text", messages=MESSAGES)
    assert settled(gw, lambda: quota(gw)["requests"]["used"] == 1)
    assert quota(gw)["tokens"]["used"] == 0
    records = usage(gw, gw.key())["data"]
    assert records[0]["byok"] is True and records[0]["total_tokens"] > 0


def test_window_resets_at_utc_midnight(gw, clock):
    with client(gw) as sdk:
        with pytest.raises(openai.RateLimitError):
            for _ in range(20):
                sdk.chat.completions.create(model="text", messages=MESSAGES)
        clock.now += 86_400
        sdk.chat.completions.create(model="text", messages=MESSAGES)


def usage(gw, key, **params):
    response = httpx.get(
        gw.base_url + "/usage",
        params={"from": "2020-01-01", "to": "2100-01-01", **params},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    return response.json() if params.get("format") != "csv" else response.text


def test_usage_records_for_the_caller_and_the_admin(gw):
    with client(gw) as sdk:
        sdk.chat.completions.create(model="text", messages=MESSAGES)
        list(sdk.chat.completions.create(model="text", messages=MESSAGES, stream=True))
    assert settled(gw, lambda: len(usage(gw, gw.key())["data"]) == 2)
    record = usage(gw, gw.key())["data"][0]
    for field in (
        "time",
        "request_id",
        "user",
        "key_id",
        "tier",
        "capability",
        "model",
        "provider",
        "upstream_model",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "fallback",
        "byok",
        "status",
        "latency_ms",
        "estimated",
    ):
        assert field in record
    assert record["user"] == "user-free" and record["model"] == "ok"
    assert record["cost_usd"] > 0 and record["estimated"] is False
    csv_text = usage(gw, gw.key(), format="csv")
    assert csv_text.splitlines()[0].startswith("time,") and len(csv_text.splitlines()) == 3
    assert len(usage(gw, ADMIN)["data"]) == 2
    assert usage(gw, ADMIN, user="nobody")["data"] == []
    forbidden = httpx.get(
        gw.base_url + "/usage",
        params={"user": "other"},
        headers={"authorization": f"Bearer {gw.key()}"},
    )
    assert forbidden.status_code == 400


def test_redis_outage_keeps_serving_and_loses_no_record(gw, redis):
    with client(gw) as sdk:
        redis.stop()  # a restarted redis-server without persistence starts empty
        try:
            for _ in range(3):
                assert sdk.chat.completions.create(model="text", messages=MESSAGES).choices
            ready = httpx.get(gw.url + "/readyz").json()
            assert ready["store"] == "unavailable"
        finally:
            redis.start()
    assert settled(gw, lambda: len(usage(gw, ADMIN)["data"]) == 3, timeout=15)


def write_config(directory: Path, mock_base_url: str) -> Path:
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes_doc(mock_base_url)))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc(QUOTA_TIERS)))
    return directory


def serve(config_dir: Path, port: int, redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "MOCK_KEY": MOCK_KEY,
        "GATEWAY_KEYS": "sk-proc-burst=burst:shared-user",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config-dir",
            str(config_dir),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway did not start")


def test_200_concurrent_requests_through_two_processes_admit_exactly_50(redis, upstream, tmp_path):
    config_dir = write_config(tmp_path, upstream.base_url)
    ports = [free_port(), free_port()]
    processes = [serve(config_dir, port, redis.url) for port in ports]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_ready(port, process)
        statuses = asyncio.run(_burst(ports, 200))
        assert statuses.count(200) == 50 and statuses.count(429) == 150
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "usage",
                "export",
                "--from",
                "2020-01-01",
                "--to",
                "2100-01-01",
                "--format",
                "csv",
                "--config-dir",
                str(config_dir),
            ],
            env={**os.environ, "REDIS_URL": redis.url},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        rows = result.stdout.strip().splitlines()[1:]
        assert len(rows) == 200  # every request has a record, refused ones included
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)


async def _burst(ports, total):
    headers = {"authorization": "Bearer sk-proc-burst"}
    body = {"model": "text", "messages": MESSAGES, "max_tokens": 1}
    limits = httpx.Limits(max_connections=total)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        calls = [
            http.post(
                f"http://127.0.0.1:{ports[i % 2]}/v1/chat/completions", headers=headers, json=body
            )
            for i in range(total)
        ]
        responses = await asyncio.gather(*calls)
    return [response.status_code for response in responses]


def test_store_overrides_set_by_the_admin_hold_at_once(gw):
    admin = {"authorization": f"Bearer {ADMIN}"}
    url = gw.base_url + "/admin/users/user-free/quotas/text_generation"
    assert httpx.put(url, json={"requests_per_day": 1}).status_code == 401
    shown = httpx.put(url, json={"requests_per_day": 1}, headers=admin)
    assert shown.status_code == 200
    assert shown.json()["quotas"]["text_generation"]["requests_per_day"] == 1
    with client(gw) as sdk:
        sdk.chat.completions.create(model="text", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="text", messages=MESSAGES)
        assert httpx.delete(url, headers=admin).status_code == 200
        sdk.chat.completions.create(model="text", messages=MESSAGES)
    bad = httpx.put(url, json={"requests_per_day": "lots"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "requests_per_day"


def test_a_junk_byok_header_does_not_skip_quotas_on_a_keyless_upstream(upstream, redis):
    """A local model takes no key: an ``x-upstream-api-key`` it ignores must not make the
    request BYOK (uncharged); the tier's quota applies as to any other request."""
    from gateway.app import create_app
    from gateway.observe.metrics import Metrics
    from gateway.store.factory import create_store
    from tests.support import ThreadedServer, build_config

    routes = routes_doc(upstream.base_url)
    routes["upstreams"]["local"] = {"base_url": upstream.base_url}  # no api_key_env
    routes["models"]["local-ok"] = {
        "upstream": "local",
        "model": "mock/ok",
        "modality": "text",
        "price": {"input": 1.0, "output": 2.0},
    }
    tight = {"text_generation": {"requests_per_day": 50, "tokens_per_day": 1}}
    tiers = tiers_doc({"free": {"routes": {"text": ["local-ok"]}, "quotas": tight}})
    key = "sk-test-local-0123456789"
    config = build_config(routes, tiers, {"GATEWAY_KEYS": f"{key}=free:alice"})
    runtime = Runtime(redis_url=redis.url)
    app = create_app(
        config, runtime, metrics=Metrics(), store=create_store(redis.url, config.settings)
    )
    server = ThreadedServer(app, gateway=True).start()
    try:
        junk = {"x-upstream-api-key": "junk"}
        with openai.OpenAI(
            base_url=server.url + "/v1", api_key=key, max_retries=0, default_headers=junk
        ) as sdk:
            for _ in range(5):  # before: 5 of 5 answered, recorded BYOK, charged 0
                with pytest.raises(openai.RateLimitError) as refused:
                    sdk.chat.completions.create(model="text", messages=MESSAGES)
                assert refused.value.code == "quota_exceeded"
                assert "x-gateway-byok" not in refused.value.response.headers
        listed = httpx.get(server.url + "/v1/usage", headers={"authorization": f"Bearer {key}"})
        records = listed.json()["data"]
        assert [(r["status"], r["byok"]) for r in records] == [(429, False)] * 5
    finally:
        server.stop()


def test_usage_is_paged_with_a_capped_limit(gw):
    with client(gw) as sdk:
        for _ in range(5):
            sdk.chat.completions.create(model="text", messages=MESSAGES)
    assert settled(gw, lambda: len(usage(gw, gw.key())["data"]) == 5)
    whole = usage(gw, gw.key())
    assert whole["has_more"] is False and whole["next_cursor"] is None
    pages, cursor = [], None
    while True:
        page = usage(gw, gw.key(), limit="2", **({"cursor": cursor} if cursor else {}))
        pages.append(len(page["data"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["has_more"] is True
    assert pages == [2, 2, 1]
    ids = []
    cursor = None
    for _ in range(3):
        page = usage(gw, gw.key(), limit="2", **({"cursor": cursor} if cursor else {}))
        ids += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
    assert ids == [r["request_id"] for r in whole["data"]]  # oldest first, none twice
    csv_page = httpx.get(
        gw.base_url + "/usage",
        params={"from": "2020-01-01", "to": "2100-01-01", "format": "csv", "limit": "3"},
        headers={"authorization": f"Bearer {gw.key()}"},
    )
    assert csv_page.text.count("\n") == 4 and csv_page.headers["x-gateway-next-cursor"]
    for bad in (
        {"limit": "1001"},
        {"limit": "0"},
        {"cursor": "yesterday"},
        {"cursor": "1e400:0"},
        {"tag": "a\x00b"},
    ):
        refused = httpx.get(
            gw.base_url + "/usage",
            params={"from": "2020-01-01", **bad},
            headers={"authorization": f"Bearer {gw.key()}"},
        )
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"]["param"] == next(iter(bad))


def test_records_cursor_out_of_range_is_a_400(gw):
    for cursor in ("99999999999999999999", "1-99999999999999999999", "123:abc"):
        refused = httpx.get(
            gw.url + "/v1/admin/usage/records",
            params={"cursor": cursor},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "cursor"
