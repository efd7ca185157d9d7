"""A dashboard session never outlives its credential (issue 23, item 1): every request made
with the session cookie finds the admin token, GATEWAY_ADMIN_TOKEN or client key again and
checks it, as Bearer auth does. A re-tiered key's session sees the new tier at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.redis_fixture import RedisServer
from tests.ui.signin import csrf_of, sign_in

ADMIN = "session-admin-token-0123456789abcdef"
OTHER_ADMIN = "session-admin-token-changed-0123456789"
TIERS = {"free": {"routes": ["text"]}, "pro": {"routes": ["text"]}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gw(start_gateway: StartGateway, redis: RedisServer, clock: Clock) -> RunningGateway:
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    return start_gateway(TIERS, runtime=runtime, clock=clock)


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=gw.url, headers=headers, timeout=10) as client:
        yield client


def browser(gw: RunningGateway) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=10)


def new_key(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    created = admin.post("/v1/admin/keys", json={"user": "alice", "tier": "free", **fields})
    assert created.status_code == 201, created.text
    found: dict[str, Any] = created.json()
    return found


def assert_ended(http: httpx.Client, *paths: str) -> None:
    for path in paths:
        answer = http.get(path)
        assert answer.status_code == 401, (path, answer.status_code, answer.text)
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert http.get("/ui/me").headers["location"] == "/ui/login"


USER_PATHS = ("/v1/quota", "/v1/usage", "/v1/me/upstream-keys", "/v1/quota/requests")


def test_a_deleted_admin_token_ends_its_sessions(gw: RunningGateway, admin: httpx.Client) -> None:
    created = admin.post("/v1/admin/tokens", json={"role": "admin", "name": "ops"}).json()
    with browser(gw) as http:
        assert sign_in(http, created["token"]).status_code == 303
        csrf = csrf_of(http)
        assert http.get("/v1/admin/keys").status_code == 200
        assert admin.delete(f"/v1/admin/tokens/{created['id']}").status_code == 200
        assert http.get("/v1/admin/keys").status_code == 401
        minted = http.post(
            "/v1/admin/tokens", json={"role": "admin"}, headers={"x-csrf-token": csrf}
        )
        assert minted.status_code == 401, minted.text
        assert http.get("/ui/overview").headers["location"] == "/ui/login"
    tokens = admin.get("/v1/admin/tokens").json()["data"]
    assert tokens == []  # no token was minted through the dead session


def test_a_changed_gateway_admin_token_ends_its_sessions(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    """Two gateways on one Redis: the second runs with a new GATEWAY_ADMIN_TOKEN, as a
    restarted one would; the session made with the old token is refused there."""
    before = start_gateway(TIERS, runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))
    after = start_gateway(
        TIERS, runtime=Runtime(redis_url=redis.url, admin_token=Secret(OTHER_ADMIN))
    )
    with browser(before) as http:
        assert sign_in(http, ADMIN).status_code == 303
        cookie = http.cookies["gw_session"]
        assert http.get("/v1/admin/keys").status_code == 200
    with httpx.Client(base_url=after.url, timeout=10, cookies={"gw_session": cookie}) as http:
        assert http.get("/v1/admin/keys").status_code == 401
    with httpx.Client(base_url=before.url, timeout=10, cookies={"gw_session": cookie}) as http:
        assert http.get("/v1/admin/keys").status_code == 401  # the session was ended


def test_a_revoked_key_ends_its_sessions(gw: RunningGateway, admin: httpx.Client) -> None:
    key = new_key(admin)
    with browser(gw) as http:
        assert sign_in(http, key["key"]).status_code == 303
        csrf = csrf_of(http)
        for path in USER_PATHS:
            assert http.get(path).status_code == 200, path
        assert admin.delete(f"/v1/admin/keys/{key['id']}").status_code == 200
        assert_ended(http, *USER_PATHS)
        filed = http.post(
            "/v1/quota/requests",
            json={"capability": "text_generation", "requested": {"requests_per_day": 10}},
            headers={"x-csrf-token": csrf},
        )
        assert filed.status_code == 401, filed.text


def test_a_rotated_out_secret_ends_its_sessions(gw: RunningGateway, admin: httpx.Client) -> None:
    key = new_key(admin)
    with browser(gw) as http:
        assert sign_in(http, key["key"]).status_code == 303
        assert http.get("/v1/quota").status_code == 200
        assert admin.post(f"/v1/admin/keys/{key['id']}/rotate", json={}).status_code == 200
        assert_ended(http, *USER_PATHS)


def test_an_expired_key_ends_its_sessions(
    gw: RunningGateway, admin: httpx.Client, clock: Clock
) -> None:
    key = new_key(admin, expires_at=clock.now + 60)
    with browser(gw) as http:
        assert sign_in(http, key["key"]).status_code == 303
        assert http.get("/v1/usage").status_code == 200
        clock.now += 61
        assert_ended(http, *USER_PATHS)


def test_a_re_tiered_keys_session_sees_the_new_tier(
    gw: RunningGateway, admin: httpx.Client
) -> None:
    key = new_key(admin)
    with browser(gw) as http:
        assert sign_in(http, key["key"]).status_code == 303
        assert http.get("/v1/quota").json()["tier"] == "free"
        changed = admin.patch(f"/v1/admin/keys/{key['id']}", json={"tier": "pro"})
        assert changed.status_code == 200, changed.text
        by_bearer = httpx.get(
            gw.url + "/v1/quota", headers={"authorization": f"Bearer {key['key']}"}
        ).json()
        assert by_bearer["tier"] == http.get("/v1/quota").json()["tier"] == "pro"
