"""Two `gateway serve` processes on one real redis-server: system keys stored or rotated
through either are used by both, without a restart; the keys appear in neither log."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx

from gateway.control.secrets_at_rest import fingerprint
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import KEY, chat_body, gateways, write_config

ADMIN = "replica-admin-token-0123456789abcdef"
MASTER = base64.b64encode(b"r" * 32).decode()
PATH = "/v1/admin/upstreams/mock/keys"
USER_KEY = "sk-scale-user-own-key-5555"


def _admin(url: str, method: str, body: object = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, url + PATH, headers=headers, json=body, timeout=10)


def _keys_sent(upstream: MockUpstream, url: str, count: int) -> list[str]:
    """The keys the upstream received for ``count`` chats through ``url``."""
    upstream.reset()
    headers = {"authorization": f"Bearer {KEY}"}
    for _ in range(count):
        answer = httpx.post(url + "/v1/chat/completions", headers=headers, json=chat_body())
        assert answer.status_code == 200, answer.text
    return [r.headers["authorization"].removeprefix("Bearer ") for r in upstream.requests]


def _wait_listed(url: str, prints: list[str]) -> float:
    """Seconds until ``url`` lists exactly ``prints`` (the propagation time, polled)."""
    started = time.monotonic()
    while [k["fingerprint"] for k in _admin(url, "GET").json()["keys"]] != prints:
        assert time.monotonic() - started < 10, "the change never reached the other process"
        time.sleep(0.01)
    return time.monotonic() - started


def test_keys_rotated_through_one_process_are_used_by_both(
    redis: RedisServer, upstream: MockUpstream, tmp_path: Path
) -> None:
    write_config(tmp_path, upstream.base_url, 1000)
    env = {"REDIS_URL": redis.url, "GATEWAY_ADMIN_TOKEN": ADMIN, "GATEWAY_SECRET_KEY": MASTER}
    first_key, rotated = "sk-together-first-1111", ["sk-together-new-2222", "sk-together-new-3333"]
    with gateways(2, tmp_path, env) as (a, b):
        assert _admin(a.url, "PUT", {"key": first_key, "label": "launch"}).status_code == 200
        seconds = _wait_listed(b.url, [fingerprint(first_key)])
        print(f"upstream key added through A, listed by B after {seconds * 1000:.0f} ms")
        assert set(_keys_sent(upstream, b.url, 2)) == {first_key}

        assert _admin(b.url, "PUT", {"keys": rotated}).status_code == 200  # rotation
        seconds = _wait_listed(a.url, [fingerprint(k) for k in rotated])
        print(f"rotation through B, listed by A after {seconds * 1000:.0f} ms")
        assert _keys_sent(upstream, a.url, 4) == rotated * 2  # in turn
        assert set(_keys_sent(upstream, b.url, 2)) == set(rotated)

        gone = httpx.delete(
            f"{a.url}{PATH}/{fingerprint(rotated[0])}",
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert gone.status_code == 200
        _wait_listed(b.url, [fingerprint(rotated[1])])
        assert set(_keys_sent(upstream, b.url, 2)) == {rotated[1]}

        # a user's own key, stored through A, is used by B (the admin setting allows it)
        settings = httpx.put(
            a.url + "/v1/admin/settings",
            headers={"authorization": f"Bearer {ADMIN}"},
            json={"allow_user_keys": True},
        )
        assert settings.status_code == 200
        mine = {"authorization": f"Bearer {KEY}"}
        stored = httpx.put(
            a.url + "/v1/me/upstream-keys/mock", headers=mine, json={"key": USER_KEY}
        )
        assert stored.status_code == 200, stored.text
        deadline = time.monotonic() + 10
        while not httpx.get(b.url + "/v1/me/upstream-keys", headers=mine).json()["data"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _keys_sent(upstream, b.url, 2) == [USER_KEY, USER_KEY]
    for gateway in (a, b):
        log = gateway.log.read_text()
        assert all(k not in log for k in (first_key, *rotated, USER_KEY))
