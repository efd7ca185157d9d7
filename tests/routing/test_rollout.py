"""Weighted rollout: a 10 % canary gets 10 % ± 3 % of 2,000 users, each user sticks to one side,
the header and metrics say which entry, and the weights change at run time (control plane)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from gateway.config.model import Model, Upstream
from gateway.config.runtime import Runtime
from gateway.proxy.rollout import Rollout, pick, reorder, user_point
from gateway.proxy.routing import CHAT, resolve
from gateway.secret import Secret
from tests.support import DEFAULT_ROUTES, build_config, routes_doc, tiers_doc

ADMIN = "admin-token-for-rollout-tests"
CANARY_TIERS = {
    "free": {
        "routes": {
            **DEFAULT_ROUTES,
            "text": [{"model": "ok", "weight": 90}, {"model": "ok-b", "weight": 10}, "other-ok"],
        }
    }
}
MESSAGES = [{"role": "user", "content": "hello"}]


def canary_config():
    return build_config(routes_doc("http://127.0.0.1:9/v1"), tiers_doc(CANARY_TIERS), {})


def test_a_10_percent_canary_gets_10_percent_of_2000_users_and_each_user_sticks() -> None:
    config = canary_config()
    tier = config.tiers["free"]
    rollout = Rollout()
    plan = resolve(config, tier, CHAT, None, {})
    chosen = {}
    for n in range(2000):
        user = f"user-{n}"
        routed, name = rollout.apply(tier, plan, user)
        assert routed.chain[0].name == name
        chosen[user] = name
    canary = sum(1 for name in chosen.values() if name == "ok-b")
    assert 170 <= canary <= 230, canary  # 10 % ± 3 % of 2,000
    for user in list(chosen)[:200]:  # sticky: asked again, the same side
        assert rollout.apply(tier, plan, user)[1] == chosen[user]


def test_the_fallback_order_after_the_chosen_entry_stays_as_configured() -> None:
    config = canary_config()
    tier = config.tiers["free"]
    plan = resolve(config, tier, CHAT, None, {})
    user = next(f"u{n}" for n in range(10_000) if Rollout().apply(tier, plan, f"u{n}")[1] == "ok-b")
    routed, _ = Rollout().apply(tier, plan, user)
    assert [m.name for m in routed.chain] == ["ok-b", "ok", "other-ok"]
    named, entry = Rollout().apply(tier, resolve(config, tier, CHAT, "ok-b", {}), user)
    assert entry is None and named.chain[0].name == "ok-b"  # a named model: no rollout


def test_pick_and_reorder() -> None:
    assert pick((0, 0), 0.5) is None
    assert pick((90, 10), 0.0) == 0
    assert pick((90, 10), 0.95) == 1
    assert pick((0, 10, 0), 0.99) == 1
    upstream = Upstream("u", "http://x", None)
    a, b, c = (Model(n, upstream, n, "text") for n in "abc")
    assert reorder((a, b, c), 2) == (c, a, b)
    assert 0 <= user_point("free", "text", "alice") < 1
    assert user_point("free", "text", "alice") == user_point("free", "text", "alice")


def test_weights_outside_the_chain_entry_shape_are_refused() -> None:
    from gateway.config.reader import ConfigError

    bad = {"free": {"routes": {"text": [{"model": "ok", "weight": -1}, {"weight": 2}]}}}
    with pytest.raises(ConfigError) as info:
        build_config(routes_doc("http://127.0.0.1:9/v1"), tiers_doc(bad), {})
    text = str(info.value)
    assert "weight" in text and "model" in text


def _metric(gw, name: str) -> str:
    text = httpx.get(gw.url + "/metrics").text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


def test_through_the_gateway_header_metrics_and_run_time_weights(start_gateway, upstream) -> None:
    runtime = Runtime(admin_token=Secret(ADMIN))
    gw = start_gateway(CANARY_TIERS, runtime=runtime)
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    expected = "ok-b" if pick((90, 10), user_point("free", "text", "user-free")) else "ok"
    for _ in range(3):  # the same user, the same side
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        assert raw.headers["x-gateway-route"] == expected
        assert raw.headers["x-gateway-model"] == expected
        assert raw.headers["x-gateway-fallback"] == "false"
    deadline = time.monotonic() + 5
    while f'model="{expected}"' not in _metric(gw, "gateway_rollout_selections_total"):
        assert time.monotonic() < deadline, _metric(gw, "gateway_rollout")
        time.sleep(0.05)

    admin = {"authorization": f"Bearer {ADMIN}"}
    url = gw.url + "/v1/admin/tiers/free/weights"
    other = "ok" if expected == "ok-b" else "ok-b"
    assert httpx.get(url, headers=admin).json()["routes"]["text"] == {
        "ok": 90.0,
        "ok-b": 10.0,
        "other-ok": 0.0,
    }
    body = {"routes": {"text": {other: 100}}}
    put = httpx.put(url, headers=admin, json=body)
    assert put.status_code == 200, put.text
    assert put.json()["source"] == "run-time"
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-gateway-route"] == other
    bad = httpx.put(url, headers=admin, json={"routes": {"text": {"gpt-9": 5}}})
    assert bad.status_code == 400
    assert httpx.put(url, json=body).status_code == 401
    assert httpx.delete(url, headers=admin).status_code == 200
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-gateway-route"] == expected
