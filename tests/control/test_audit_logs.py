"""Issue 23 #2: users cannot wipe the operators' audit history.

Before: one stream held every audit entry, capped at 10,000; 10,500 ``PUT
/v1/me/upstream-keys/together`` by one free key (all answered 200) left 10,001 entries and no
operator entry. Now operator and user changes go to two logs, each capped on its own; a write
that changes nothing is not written; a user's writes are rate-limited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config.load import load_config
from gateway.control.plane import AUDIT_MAXLEN, ControlPlane
from gateway.control.user_writes import USER_WRITES_PER_MINUTE
from gateway.store.factory import create_store
from tests.control import test_upstream_keys as base
from tests.control.test_upstream_keys import CLIENT, Served
from tests.redis_fixture import RedisServer

OPERATOR_ENTRIES = 50
USER_WRITES = 10_500
MINE = "/v1/me/upstream-keys/mock"
ROOT = Path(__file__).resolve().parents[2]
key_upstream = base.key_upstream  # the fixtures, shared
serve = base.serve


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_ten_thousand_user_writes_leave_every_operator_entry(
    backend: str, redis: RedisServer
) -> None:
    settings = load_config(ROOT, env={}).settings
    url = redis.url if backend == "redis" else None

    async def scenario() -> None:
        store = create_store(url, settings)
        plane = ControlPlane(store)
        try:
            for n in range(OPERATOR_ENTRIES):
                await plane.put(
                    "flags", f"f{n}", {"on": True}, actor="env-admin", action="flag.set"
                )
            for n in range(USER_WRITES):
                document = {"fingerprint": f"sha256:{n:016x}"}
                await plane.put(
                    "user_upstream_keys", "alice/mock", document, actor="key:k1",
                    action="user_key.put", log="user",
                )  # fmt: skip
            operators = await plane.audit_log(limit=1000, log="operator")
            assert len(operators) == OPERATOR_ENTRIES
            assert {e["id"] for e in operators} == {f"f{n}" for n in range(OPERATOR_ENTRIES)}
            assert {e["log"] for e in operators} == {"operator"}
            users = await _whole_log(plane, "user")
            assert AUDIT_MAXLEN <= len(users) < USER_WRITES  # capped on its own (Redis: ~)
            assert users[0]["after"] == {"fingerprint": f"sha256:{USER_WRITES - 1:016x}"}
            both = await plane.audit_log(limit=AUDIT_MAXLEN + OPERATOR_ENTRIES + 200)
            assert sum(e["log"] == "operator" for e in both) == OPERATOR_ENTRIES
            assert both[0]["log"] == "user" and both[-1]["log"] == "operator"  # newest first
        finally:
            await store.aclose()

    asyncio.run(scenario())


async def _whole_log(plane: ControlPlane, log: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    before = None
    while True:
        page = await plane.audit_log(limit=1000, before=before, log=log)
        found += page
        if len(page) < 1000:
            return found
        before = page[-1]["entry_id"]


def test_user_writes_no_op_skipped_rate_limited_and_audited_apart(serve: Any) -> None:
    gw: Served = serve()
    assert gw.call("PUT", "/v1/admin/settings", json={"allow_user_keys": True}).status_code == 200
    for _ in range(3):  # the same key three times: one write
        assert gw.call("PUT", MINE, CLIENT, json={"key": "sk-same-key-1"}).status_code == 200
    user_log = gw.call("GET", "/v1/admin/audit?log=user").json()["data"]
    assert [e["action"] for e in user_log] == ["user_key.put"]
    operator_log = gw.call("GET", "/v1/admin/audit?log=operator").json()["data"]
    assert {e["log"] for e in operator_log} == {"operator"}
    assert "user_key.put" not in {e["action"] for e in operator_log}
    both = gw.call("GET", "/v1/admin/audit").json()["data"]
    assert {e["log"] for e in both} == {"operator", "user"}
    assert gw.call("GET", "/v1/admin/audit?log=nope").status_code == 400
    # a digit to str.isdigit that int() refuses (found by the schemathesis fuzz): a 400, not a 500
    for odd in ("%C2%B2", "%E2%91%A0", "-1", "1.0"):  # ², ①
        refused_limit = gw.call("GET", f"/v1/admin/audit?limit={odd}")
        assert refused_limit.status_code == 400, (odd, refused_limit.text)
        assert refused_limit.json()["error"]["param"] == "limit"

    refused = None
    for n in range(2 * USER_WRITES_PER_MINUTE + 2):  # a minute may turn once meanwhile
        answer = gw.call("PUT", MINE, CLIENT, json={"key": f"sk-key-number-{n}"})
        if answer.status_code != 200:
            refused = answer
            break
    assert refused is not None and refused.status_code == 429
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    user_log = gw.call("GET", "/v1/admin/audit?log=user&limit=1000").json()["data"]
    assert len(user_log) <= 1 + 2 * USER_WRITES_PER_MINUTE
