"""Stored system keys per upstream, on a served gateway with a real redis-server: sealed at
rest, used in turn, set aside after 401/429, never shown; and the master key's rules."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.control.plane import Snapshot
from gateway.control.secrets_at_rest import (
    KEY_ENV,
    KEY_FILE_ENV,
    MasterKeyInvalid,
    SealedUnreadable,
    SecretBox,
    fingerprint,
    parse_master_key,
)
from gateway.control.upstream_keys import UpstreamKeyPool, sealed_entry
from gateway.observe.metrics import Metrics
from gateway.parts import Gateway
from gateway.secret import Secret
from gateway.store.factory import create_store
from tests.control.key_upstream import KeyUpstream
from tests.redis_fixture import RedisServer, command
from tests.support import MOCK_KEY, ThreadedServer, build_config, routes_doc, tiers_doc

ADMIN = "env-admin-token-upstream-keys"
CLIENT = "sk-client-alice-0123456789"
MASTER = base64.b64encode(bytes(range(32))).decode()


@dataclass
class Served:
    url: str
    app: Starlette

    @property
    def gateway(self) -> Gateway:
        found: Gateway = self.app.state.gateway
        return found

    def call(self, method: str, path: str, token: str = ADMIN, **kw: object) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}", **kw.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]

    def chat(self, token: str = CLIENT, **headers: str) -> httpx.Response:
        body = {"model": "ok", "messages": [{"role": "user", "content": "hi"}]}
        return self.call("POST", "/v1/chat/completions", token, json=body, headers=headers)


@pytest.fixture
def key_upstream() -> Iterator[KeyUpstream]:
    upstream = KeyUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def serve(
    key_upstream: KeyUpstream, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[object]:
    servers: list[ThreadedServer] = []

    def start(master: str | None = MASTER) -> Served:
        if master is None:
            monkeypatch.delenv(KEY_ENV, raising=False)
        else:
            monkeypatch.setenv(KEY_ENV, master)
        monkeypatch.delenv(KEY_FILE_ENV, raising=False)
        config = build_config(
            routes_doc(key_upstream.base_url), tiers_doc(), {"GATEWAY_KEYS": f"{CLIENT}=free:alice"}
        )
        runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
        store = create_store(runtime.redis_url, config.settings)
        app = create_app(config, runtime, metrics=Metrics(), store=store)
        server = ThreadedServer(app).start()
        servers.append(server)
        return Served(server.url, app)

    yield start
    for server in servers:
        server.stop()


def test_master_key_forms_and_sealing_bound_to_its_place(tmp_path: object) -> None:
    raw = bytes(range(32))
    assert parse_master_key(raw.hex()) == raw
    assert parse_master_key(base64.b64encode(raw).decode()) == raw
    assert parse_master_key(base64.urlsafe_b64encode(raw).decode()) == raw
    with pytest.raises(MasterKeyInvalid) as bad:
        parse_master_key("too-short-secret")
    assert "too-short-secret" not in str(bad.value)
    assert SecretBox.from_env({}) is None
    box = SecretBox.from_env({KEY_ENV: MASTER})
    assert box is not None
    sealed = box.seal("sk-upstream-secret-value", "upstream_keys/mock/fp1")
    assert "sk-upstream-secret-value" not in json.dumps(sealed)
    assert box.open(sealed, "upstream_keys/mock/fp1") == "sk-upstream-secret-value"
    with pytest.raises(SealedUnreadable):  # moved to another upstream: does not open
        box.open(sealed, "upstream_keys/other/fp1")
    other = SecretBox(bytes(32))
    with pytest.raises(SealedUnreadable):  # another master key
        other.open(sealed, "upstream_keys/mock/fp1")
    again = box.seal("sk-upstream-secret-value", "upstream_keys/mock/fp1")
    assert again["nonce"] != sealed["nonce"]  # a fresh nonce each time
    assert fingerprint("sk-a") == fingerprint("sk-a") != fingerprint("sk-b")


def test_pool_in_turn_set_aside_back_and_blobs_bound_to_their_upstream() -> None:
    now = [100.0]
    box = SecretBox(bytes(range(32)))
    pool = UpstreamKeyPool(box, clock=lambda: now[0])
    entries = [sealed_entry(box, "mock", s, "", 0) for s in ("k1", "k2")]
    moved = sealed_entry(box, "mock", "k3", "", 0)  # sealed for mock, stored under other
    pool.update(
        Snapshot(1, {"upstream_keys": {"mock": {"keys": entries}, "other": {"keys": [moved]}}})
    )
    first, second = pool.pick("mock"), pool.pick("mock")
    assert first is not None and second is not None
    assert [first.secret.reveal(), second.secret.reveal()] == ["k1", "k2"]
    assert pool.set_aside(first, 429, 5.0) is True  # k2 is still usable
    assert [pool.pick("mock"), pool.pick("mock")] == [second, second]
    assert pool.set_aside(second, 401, None) is False
    assert pool.pick("mock") is None
    assert pool.soonest("mock") == first  # back in 5 s; k2 in 600 s
    now[0] += 5
    assert pool.pick("mock") == first
    assert not pool.has_keys("other") and pool.pick("other") is None
    other = Snapshot(2, {"upstream_keys": {"other": {"keys": [moved]}}})
    assert [k["state"] for k in pool.state(other, "other")] == ["unreadable"]
    assert "sealed" not in json.dumps(pool.state(other, "other"))


def test_keys_are_used_in_turn_and_never_shown(
    serve: object, key_upstream: KeyUpstream, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = serve()  # type: ignore[operator]
    secrets = ["sk-system-key-aaaa-1111", "sk-system-key-bbbb-2222"]
    put = gw.call("PUT", "/v1/admin/upstreams/mock/keys", json={"keys": secrets})
    assert put.status_code == 200, put.text
    listed = gw.call("GET", "/v1/admin/upstreams/mock/keys").json()
    assert [k["fingerprint"] for k in listed["keys"]] == [fingerprint(s) for s in secrets]
    assert {k["state"] for k in listed["keys"]} == {"active"}
    assert listed["env_key"] == {"variable": "MOCK_KEY", "set": True}

    for _ in range(4):
        assert gw.chat().status_code == 200
    assert key_upstream.keys_seen() == secrets * 2

    # never returned, logged, audited, exported to /metrics; only ciphertext in Redis
    shown = [
        put.text,
        json.dumps(listed),
        gw.call("GET", "/v1/admin/audit").text,
        gw.call("GET", "/metrics").text,
        caplog.text,
        command(redis.port, "HGETALL", "{gw:cp}:kind:upstream_keys").decode(),
    ]
    assert "sealed" in shown[-1] and "ciphertext" in shown[-1]
    for text in shown:
        for secret in secrets:
            assert secret not in text

    # add one, then delete one: the set in turn follows
    added = gw.call("PUT", "/v1/admin/upstreams/mock/keys", json={"key": "sk-third-key-3333"})
    assert len(added.json()["keys"]) == 3
    gone = gw.call("DELETE", f"/v1/admin/upstreams/mock/keys/{fingerprint(secrets[0])}")
    assert [k["fingerprint"] for k in gone.json()["keys"]] == [
        fingerprint(secrets[1]),
        fingerprint("sk-third-key-3333"),
    ]
    key_upstream.clear()
    for _ in range(4):
        assert gw.chat().status_code == 200
    assert set(key_upstream.keys_seen()) == {secrets[1], "sk-third-key-3333"}
    actions = [e["action"] for e in gw.call("GET", "/v1/admin/audit").json()["data"]]
    assert actions[:3] == ["upstream_keys.delete", "upstream_keys.add", "upstream_keys.replace"]


def test_a_refused_or_rate_limited_key_is_set_aside(
    serve: object, key_upstream: KeyUpstream
) -> None:
    gw = serve()  # type: ignore[operator]
    bad, limited, good = "sk-revoked-key-1", "sk-limited-key-2", "sk-working-key-3"
    key_upstream.refused.add(bad)
    key_upstream.limited.add(limited)
    put = gw.call("PUT", "/v1/admin/upstreams/mock/keys", json={"keys": [bad, limited, good]})
    assert put.status_code == 200, put.text
    for _ in range(5):
        answer = gw.chat()
        assert answer.status_code == 200, answer.text
    seen = key_upstream.keys_seen()
    assert seen.count(bad) == 1 and seen.count(limited) == 1
    assert seen[2:] == [good] * 5
    states = {
        k["fingerprint"]: k for k in gw.call("GET", "/v1/admin/upstreams/mock/keys").json()["keys"]
    }
    assert states[fingerprint(bad)]["state"] == "set_aside"
    assert states[fingerprint(bad)]["set_aside"]["reason"] == "refused"
    assert states[fingerprint(limited)]["set_aside"]["reason"] == "rate_limited"
    assert 50 < states[fingerprint(limited)]["set_aside"]["remaining_s"] <= 60  # retry-after
    assert states[fingerprint(good)]["state"] == "active"

    # every stored key set aside: the env key (api_key_env) is the reserve
    key_upstream.refused.add(good)
    key_upstream.clear()
    assert gw.chat().status_code == 200
    assert key_upstream.keys_seen() == [good, MOCK_KEY]


def test_a_user_header_key_is_not_judged_as_a_system_key(
    serve: object, key_upstream: KeyUpstream
) -> None:
    gw = serve()  # type: ignore[operator]
    gw.call("PUT", "/v1/admin/upstreams/mock/keys", json={"key": "sk-system-one"})
    key_upstream.refused.add("sk-users-own-bad")
    answer = gw.chat(**{"x-upstream-api-key": "sk-users-own-bad"})
    assert answer.status_code == 401 and "sk-users-own-bad" not in answer.text
    assert key_upstream.keys_seen() == ["sk-users-own-bad"]
    listed = gw.call("GET", "/v1/admin/upstreams/mock/keys").json()["keys"]
    assert listed[0]["state"] == "active"


def test_storing_keys_without_a_master_key_is_refused(serve: object) -> None:
    gw = serve(master=None)  # type: ignore[operator]
    put = gw.call("PUT", "/v1/admin/upstreams/mock/keys", json={"key": "sk-never-stored"})
    assert put.status_code == 503
    assert put.json()["error"]["code"] == "secret_key_missing" and KEY_ENV in put.text
    assert gw.call("GET", "/v1/admin/upstreams/mock/keys").json()["keys"] == []


def test_bad_input_and_roles(serve: object) -> None:
    gw = serve()  # type: ignore[operator]
    path = "/v1/admin/upstreams/mock/keys"
    assert gw.call("PUT", "/v1/admin/upstreams/nowhere/keys", json={"key": "k"}).status_code == 404
    for body in ({"key": ""}, {"key": "has space"}, {"keys": "x"}, {"nope": 1}, {"keys": [1]}):
        answer = gw.call("PUT", path, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["type"] == "invalid_request_error"
    assert gw.call("PUT", path, CLIENT, json={"key": "sk-x"}).status_code == 401
    assert gw.call("DELETE", path + "/sha256:0000").status_code == 404


def test_precedence_survives_a_restart_of_the_reader(
    serve: object, key_upstream: KeyUpstream
) -> None:
    """A second process started later opens the stored keys from Redis at start."""
    first = serve()  # type: ignore[operator]
    first.call("PUT", "/v1/admin/upstreams/mock/keys", json={"key": "sk-stored-before-start"})
    second = serve()  # type: ignore[operator]
    deadline = time.monotonic() + 5
    while not second.gateway.stored_keys.pool.has_keys("mock"):  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    key_upstream.clear()
    assert second.chat().status_code == 200
    assert key_upstream.keys_seen() == ["sk-stored-before-start"]
