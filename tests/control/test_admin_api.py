"""The admin API on a served gateway (real redis-server): tokens and roles, client keys,
rotation, revocation, the audit log, the OpenAPI document and bad input."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.redis_fixture import RedisServer

ADMIN = "env-admin-token-0123456789"


@pytest.fixture
def gw(start_gateway: StartGateway, redis: RedisServer) -> RunningGateway:
    return start_gateway(runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))


def call(
    gw: RunningGateway, method: str, path: str, token: str = ADMIN, **kw: object
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def chat(gw: RunningGateway, key: str, model: str = "ok") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return call(gw, "POST", "/v1/chat/completions", key, json=body)


def test_a_created_key_works_rotates_and_is_revoked(gw: RunningGateway) -> None:
    created = call(
        gw, "POST", "/v1/admin/keys", json={"user": "alice", "tier": "free", "name": "ci"}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    assert key.startswith("sk-gw-") and key_id.startswith("key_")
    assert chat(gw, key).status_code == 200
    listed = call(gw, "GET", "/v1/admin/keys?user=alice").json()["data"]
    assert [k["id"] for k in listed] == [key_id]
    assert key not in json.dumps(listed) and "sha256" not in json.dumps(listed)
    assert listed[0]["spend_usd"]["day"] > 0 and listed[0]["last_used_at"] > time.time() - 60

    rotated = call(gw, "POST", f"/v1/admin/keys/{key_id}/rotate", json={"grace_s": 0})
    new_key = rotated.json()["key"]
    assert chat(gw, new_key).status_code == 200
    assert chat(gw, key).status_code == 401

    assert call(gw, "DELETE", f"/v1/admin/keys/{key_id}").status_code == 200
    assert chat(gw, new_key).status_code == 401
    assert call(gw, "GET", f"/v1/admin/keys/{key_id}").status_code == 404

    log = call(gw, "GET", "/v1/admin/audit").json()["data"]
    assert [e["action"] for e in log] == ["key.revoke", "key.rotate", "key.create"]
    assert all(e["actor"] == "env-admin" for e in log)
    text = json.dumps(log)
    assert key not in text and new_key not in text and "sha256" not in text


def test_expired_keys_and_model_allow_list(gw: RunningGateway) -> None:
    past = call(
        gw,
        "POST",
        "/v1/admin/keys",
        json={"user": "bob", "tier": "free", "expires_at": time.time() - 1},
    )
    assert chat(gw, past.json()["key"]).json()["error"]["code"] == "expired_api_key"
    only = call(
        gw, "POST", "/v1/admin/keys", json={"user": "bob", "tier": "free", "models": ["ok"]}
    )
    key = only.json()["key"]
    assert chat(gw, key, "ok").status_code == 200
    refused = chat(gw, key, "ok-b")
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "model"


def test_roles_viewer_reads_but_cannot_write(gw: RunningGateway) -> None:
    made = call(gw, "POST", "/v1/admin/tokens", json={"role": "viewer", "name": "dash"})
    assert made.status_code == 201
    viewer = made.json()["token"]
    assert call(gw, "GET", "/v1/admin/keys", viewer).status_code == 200
    assert call(gw, "GET", "/v1/admin/audit", viewer).status_code == 200
    chat(gw, gw.key())
    others = call(gw, "GET", "/v1/usage?user=user-free&from=2020-01-01&to=2100-01-01", viewer)
    assert others.status_code == 200 and others.json()["data"], others.text  # any user's usage
    denied = call(gw, "POST", "/v1/admin/keys", viewer, json={"user": "x", "tier": "free"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "insufficient_role"
    admin = call(gw, "POST", "/v1/admin/tokens", json={"role": "admin"}).json()
    assert (
        call(
            gw, "POST", "/v1/admin/keys", admin["token"], json={"user": "x", "tier": "free"}
        ).status_code
        == 201
    )
    tokens = call(gw, "GET", "/v1/admin/tokens").json()["data"]
    assert {t["role"] for t in tokens} == {"viewer", "admin"}
    assert viewer not in json.dumps(tokens) and "sha256" not in json.dumps(tokens)
    assert call(gw, "DELETE", f"/v1/admin/tokens/{made.json()['id']}").status_code == 200
    assert call(gw, "GET", "/v1/admin/keys", viewer).status_code == 401
    assert call(gw, "GET", "/v1/admin/keys", "nope").status_code == 401
    log = call(gw, "GET", "/v1/admin/audit").json()["data"]
    assert log[1]["actor"] == f"token:{admin['id']}" and viewer not in json.dumps(log)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"user": "a"}',
        b'{"user": "a", "tier": "nope"}',
        b'{"user": "a", "tier": "free", "rpm": -1}',
        b'{"user": "a", "tier": "free", "rpm": true}',
        b'{"user": "a", "tier": "free", "budget_usd": {"week": 1}}',
        b'{"user": "a", "tier": "free", "models": ["no-such-model"]}',
        b'{"user": "a", "tier": "free", "expires_at": "soon"}',
        b'{"user": "a", "tier": "free", "surprise": 1}',
    ],
)
def test_bad_input_is_an_openai_shaped_400(gw: RunningGateway, body: bytes) -> None:
    answer = call(gw, "POST", "/v1/admin/keys", content=body)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}


def test_openapi_lists_every_admin_route(gw: RunningGateway) -> None:
    document = call(gw, "GET", "/v1/admin/openapi.json").json()
    assert document["openapi"].startswith("3.")
    registered = {
        (method, route.path)
        for route in gw.app.routes
        if getattr(route, "path", "").startswith("/v1/admin")
        for method in (getattr(route, "methods", None) or ())
        if method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    missing = sorted(registered - documented)
    assert not missing, f"add an Op entry to gateway/http/admin/routes.py OPERATIONS: {missing}"


def test_user_override_changes_are_audited(gw: RunningGateway) -> None:
    quota = {"requests_per_day": 7}
    assert (
        call(gw, "PUT", "/v1/admin/users/carol/quotas/text_generation", json=quota).status_code
        == 200
    )
    assert call(gw, "DELETE", "/v1/admin/users/carol/quotas/text_generation").status_code == 200
    assert (
        call(gw, "PUT", "/v1/admin/users/carol/budget", json={"usd_per_day": 2}).status_code == 200
    )
    log = call(gw, "GET", "/v1/admin/audit").json()["data"]
    assert [(e["action"], e["id"]) for e in log] == [
        ("user_budget.set", "carol"),
        ("user_quota.delete", "carol/text_generation"),
        ("user_quota.set", "carol/text_generation"),
    ]
    assert log[1]["before"]["requests_per_day"] == 7 and log[1]["after"] is None
    assert log[0]["after"]["usd_per_day"] == 2


def test_patch_changes_limits_and_a_key_limit_answers_an_openai_shaped_429(
    gw: RunningGateway,
) -> None:
    made = call(
        gw, "POST", "/v1/admin/keys", json={"user": "dave", "tier": "free", "rpm": 1}
    ).json()
    key = made["key"]
    while time.time() % 60 > 55:  # both requests in one minute window (rpm counts per minute)
        time.sleep(0.25)
    assert chat(gw, key).status_code == 200
    refused = chat(gw, key)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "key_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    patched = call(gw, "PATCH", f"/v1/admin/keys/{made['id']}", json={"rpm": None, "tpm": 10**6})
    assert patched.status_code == 200 and patched.json()["rpm"] is None
    assert patched.json()["tpm"] == 10**6 and "key" not in patched.json()
    assert chat(gw, key).status_code == 200
    assert (
        call(gw, "PATCH", f"/v1/admin/keys/{made['id']}", json={"user": "eve"}).status_code == 400
    )
    log = call(gw, "GET", "/v1/admin/audit").json()["data"]
    assert log[0]["action"] == "key.update" and log[0]["before"]["rpm"] == 1


def test_a_keys_allow_list_holds_for_the_fallback_chain(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    """A key limited to one model is never served by another through the chain's fallbacks."""
    routes = {"text": ["fail-500", "ok"], "embedding": ["embed"]}
    gw = start_gateway(
        {"free": {"routes": routes}},
        runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)),
    )
    made = call(
        gw, "POST", "/v1/admin/keys", json={"user": "bob", "tier": "free", "models": ["fail-500"]}
    )
    key = made.json()["key"]
    refused = chat(gw, key, "fail-500")  # before: 200 from 'ok', the chain's fallback
    assert refused.status_code == 500, refused.text
    assert "fail-500" in refused.json()["error"]["message"]
    assert "ok:" not in refused.json()["error"]["message"]  # 'ok' was never tried
    both = call(
        gw,
        "POST",
        "/v1/admin/keys",
        json={"user": "bob", "tier": "free", "models": ["fail-500", "ok"]},
    )
    served = chat(gw, both.json()["key"], "fail-500")
    assert served.status_code == 200 and served.headers["x-gateway-model"] == "ok"
