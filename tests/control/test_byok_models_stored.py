"""``byok_models`` with a user's stored upstream key (real redis-server): the stored key
unlocks a model outside the tier, sent with that key; with user keys switched off, 403."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.control.secrets_at_rest import KEY_ENV, KEY_FILE_ENV
from gateway.observe.metrics import Metrics
from gateway.secret import Secret
from gateway.store.factory import create_store
from tests.control.key_upstream import KeyUpstream
from tests.control.test_upstream_keys import ADMIN, CLIENT, MASTER, Served
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

USER_KEY = "sk-alice-own-account-key-42"


@pytest.fixture
def key_upstream() -> Iterator[KeyUpstream]:
    upstream = KeyUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def gw(
    key_upstream: KeyUpstream, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    monkeypatch.setenv(KEY_ENV, MASTER)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    tiers = tiers_doc({"free": {"routes": DEFAULT_ROUTES, "byok_models": "any"}})
    config = build_config(
        routes_doc(key_upstream.base_url), tiers, {"GATEWAY_KEYS": f"{CLIENT}=free:alice"}
    )
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    app = create_app(
        config, runtime, metrics=Metrics(), store=create_store(redis.url, config.settings)
    )
    server = ThreadedServer(app).start()
    yield Served(server.url, app)
    server.stop()


def ask(gw: Served, model: str) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return gw.call("POST", "/v1/chat/completions", CLIENT, json=body)


def test_a_stored_user_key_unlocks_the_users_own_models(
    gw: Served, key_upstream: KeyUpstream
) -> None:
    assert gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys": True}).status_code == 200
    stored = gw.call("PUT", "/v1/me/upstream-keys/mock", CLIENT, json={"key": USER_KEY})
    assert stored.status_code == 200, stored.text
    answer = ask(gw, "acct/own-model")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "acct/own-model"
    assert key_upstream.keys_seen()[-1] == USER_KEY

    gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys": False})
    refused = ask(gw, "acct/own-model")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "own_key_required"
    assert USER_KEY not in refused.text
