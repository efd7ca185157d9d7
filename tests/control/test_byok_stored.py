"""Users' stored upstream keys (BYOK) on a served gateway with a real redis-server: allowed only
by the admin setting, used automatically (the header still overrides), metered as BYOK with
nothing charged, and never shown anywhere."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from gateway.control.secrets_at_rest import fingerprint
from tests.control import test_upstream_keys as base
from tests.control.key_upstream import KeyUpstream
from tests.control.test_upstream_keys import CLIENT, Served
from tests.redis_fixture import RedisServer, command
from tests.support import MOCK_KEY

USER_KEY = "sk-alice-own-together-key-42"
HEADER_KEY = "sk-alice-header-key-77"
MINE = "/v1/me/upstream-keys"
key_upstream = base.key_upstream  # the fixtures, shared
serve = base.serve


def _records(gw: Served, count: int) -> list[dict[str, Any]]:
    """The user's usage records, once ``count`` of them are settled."""
    deadline = time.monotonic() + 10
    while True:
        records: list[dict[str, Any]] = gw.call("GET", "/v1/usage", CLIENT).json()["data"]
        if len(records) >= count or time.monotonic() > deadline:
            return sorted(records, key=lambda r: r["ts"])
        time.sleep(0.05)


def test_a_stored_user_key_is_used_metered_as_byok_and_never_shown(
    serve: Any, key_upstream: KeyUpstream, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    gw: Served = serve()
    shown: list[str] = []

    refused = gw.call("PUT", f"{MINE}/mock", CLIENT, json={"key": USER_KEY})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "user_keys_disabled"
    assert (
        gw.call("PUT", "/v1/admin/settings", CLIENT, json={"allow_user_keys": True}).status_code
        == 401
    )
    on = gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys": True})
    assert on.status_code == 200 and on.json()["allow_user_keys"] is True

    stored = gw.call("PUT", f"{MINE}/mock", CLIENT, json={"key": USER_KEY})
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"] == [
        {
            "upstream": "mock",
            "fingerprint": fingerprint(USER_KEY),
            "updated_at": pytest.approx(time.time(), abs=60),
        }
    ]
    listing = gw.call("GET", MINE, CLIENT)
    assert listing.json()["data"][0]["fingerprint"] == fingerprint(USER_KEY)
    shown += [stored.text, listing.text]

    used = gw.chat()
    assert used.status_code == 200, used.text
    assert key_upstream.keys_seen() == [USER_KEY]
    overridden = gw.chat(**{"x-upstream-api-key": HEADER_KEY})
    assert overridden.status_code == 200
    assert key_upstream.keys_seen()[-1] == HEADER_KEY

    records = _records(gw, 2)
    assert [r["byok"] for r in records] == [True, True]
    for record in records:
        assert record["charged_usd"] == 0.0 and record["list_cost_usd"] > 0
    quota = gw.call("GET", "/v1/quota", CLIENT)
    shown += [json.dumps(records), quota.text]

    # the setting switched off: the stored key is no longer used (the system key is)
    gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys": False})
    assert gw.chat().status_code == 200
    assert key_upstream.keys_seen()[-1] == MOCK_KEY
    assert _records(gw, 3)[-1]["byok"] is False and _records(gw, 3)[-1]["charged_usd"] > 0
    assert gw.call("PUT", f"{MINE}/mock", CLIENT, json={"key": USER_KEY}).status_code == 403

    raw = command(redis.port, "HGETALL", "{gw:cp}:kind:user_upstream_keys").decode()
    assert "ciphertext" in raw
    shown += [
        raw,
        gw.call("GET", "/v1/admin/audit").text,
        gw.call("GET", "/metrics").text,
        gw.call("GET", "/v1/usage?format=csv", CLIENT).text,
        caplog.text,
    ]
    for text in shown:
        assert USER_KEY not in text

    deleted = gw.call("DELETE", f"{MINE}/mock", CLIENT)  # allowed while the setting is off
    assert deleted.status_code == 200 and deleted.json()["data"] == []
    assert gw.call("DELETE", f"{MINE}/mock", CLIENT).status_code == 404


def test_user_keys_are_per_user_and_checked(serve: Any, key_upstream: KeyUpstream) -> None:
    gw: Served = serve()
    gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys": True})
    assert gw.call("PUT", f"{MINE}/nowhere", CLIENT, json={"key": USER_KEY}).status_code == 404
    assert gw.call("PUT", f"{MINE}/mock", CLIENT, json={"key": "two words"}).status_code == 400
    assert gw.call("PUT", f"{MINE}/mock", CLIENT, json={}).status_code == 400
    assert (
        gw.call("PUT", f"{MINE}/mock", "sk-not-a-client-key", json={"key": "k"}).status_code == 401
    )
    # a stored key for another upstream is not used for this chain's upstream
    assert gw.call("PUT", f"{MINE}/other", CLIENT, json={"key": USER_KEY}).status_code == 200
    assert gw.chat().status_code == 200
    assert key_upstream.keys_seen() == [MOCK_KEY]
    assert gw.call("GET", "/v1/admin/settings", CLIENT).status_code == 401
    assert gw.call("GET", "/v1/admin/settings").json()["allow_user_keys"] is True


def test_user_keys_allowed_per_upstream(serve: Any, key_upstream: KeyUpstream) -> None:
    """``allow_user_keys_for`` overrides the setting for the upstreams it names, both ways."""
    gw: Served = serve()
    per = gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys_for": {"mock": True}})
    assert per.status_code == 200, per.text
    assert per.json()["user_keys_allowed"] == {"mock": True, "other": False}
    assert gw.call("PUT", f"{MINE}/other", CLIENT, json={"key": USER_KEY}).status_code == 403
    assert gw.call("PUT", f"{MINE}/mock", CLIENT, json={"key": USER_KEY}).status_code == 200
    assert gw.call("GET", MINE, CLIENT).json()["allowed_upstreams"] == ["mock"]
    assert gw.chat().status_code == 200
    assert key_upstream.keys_seen() == [USER_KEY]

    # on for every upstream but off for this one: its stored key is no longer used
    both = {"allow_user_keys": True, "allow_user_keys_for": {"mock": False}}
    assert gw.call("PUT", "/v1/admin/settings", json=both).json()["user_keys_allowed"] == {
        "mock": False,
        "other": True,
    }
    assert gw.chat().status_code == 200
    assert key_upstream.keys_seen()[-1] == MOCK_KEY
    # null drops the upstream's own choice: the setting for every upstream applies again
    back = gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys_for": {"mock": None}})
    assert back.json()["allow_user_keys_for"] == {} and back.json()["allow_user_keys"] is True
    for bad in ({"nowhere": True}, {"mock": "yes"}, ["mock"]):
        refused = gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys_for": bad})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "allow_user_keys_for"
