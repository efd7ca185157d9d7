"""Issue 10 #15: admin override input is validated before it is written, and a garbage
override already in the store never turns reads of that user into a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from gateway.store import keys

from .helpers import RedisServer, command

ADMIN = "admin-token-for-override-tests"
TIERS = {
    "free": {"routes": {"text": ["ok"]}, "quotas": {"text_generation": {"requests_per_day": 5}}}
}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(start_gateway: Any, redis_server: RedisServer) -> Any:
    redis_server.flushall()
    runtime = Runtime(redis_url=redis_server.url, admin_token=Secret(ADMIN))
    return start_gateway(TIERS, runtime=runtime)


def admin_put(gw: Any, path: str, body: Any) -> httpx.Response:
    return httpx.put(
        gw.base_url + f"/admin/users/user-free/{path}",
        json=body,
        headers={"authorization": f"Bearer {ADMIN}"},
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("quotas/text_generation", {"tokens_per_day": 1e30}),
        ("quotas/text_generation", {"tokens_per_day": 10**30}),
        ("quotas/text_generation", {"requests_per_day": -1}),
        ("quotas/text_generation", {"requests_per_day": 2.5}),
        ("quotas/text_generation", {"requests_per_day": True}),
        ("quotas/text_generation", {"tokens_per_request": "100"}),
        ("quotas/text_generation", {"minutes_per_day": 1e300}),
        ("budget", {"usd_per_day": 1e30}),
        ("budget", {"usd_per_month": -5}),
    ],
)
def test_out_of_range_overrides_are_refused_with_a_400(gw: Any, path: str, body: Any) -> None:
    """Before: ``{"tokens_per_day": 1e30}`` was written, and every read of the user was a 500."""
    answer = admin_put(gw, path, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == next(iter(body))
    shown = httpx.get(
        gw.base_url + "/admin/users/user-free", headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert shown.status_code == 200 and shown.json()["quotas"] == {}


def test_sane_overrides_are_still_written(gw: Any) -> None:
    answer = admin_put(
        gw, "quotas/text_generation", {"tokens_per_day": 10**12, "minutes_per_day": 1.5}
    )
    assert answer.status_code == 200
    assert answer.json()["quotas"]["text_generation"]["tokens_per_day"] == 10**12
    assert admin_put(gw, "budget", {"usd_per_day": 2.5, "usd_per_month": None}).status_code == 200


def test_a_garbage_override_in_the_store_is_ignored(gw: Any, redis_server: RedisServer) -> None:
    override = keys.user_overrides("user-free")
    command(redis_server.port, "HSET", override, "text_generation:req", "1e+30")
    command(redis_server.port, "HSET", override, "text_generation:tok", "1" + "0" * 30)
    headers = {"authorization": f"Bearer {gw.key()}"}
    shown = httpx.get(
        gw.base_url + "/admin/users/user-free", headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert shown.status_code == 200 and shown.json()["quotas"] == {}
    assert httpx.get(gw.base_url + "/quota", headers=headers).status_code == 200
    chat = httpx.post(
        gw.base_url + "/chat/completions",
        headers=headers,
        json={"model": "text", "messages": MESSAGES},
    )
    assert chat.status_code == 200
    assert chat.headers["x-ratelimit-limit-requests"] == "5"  # the tier's, not the garbage
