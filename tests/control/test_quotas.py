"""Tier quotas at run time and quota-increase requests, through the admin and user APIs."""

from __future__ import annotations

import httpx

from tests.control.flag_setup import KEYS, admin, chat, flag_gateway
from tests.mock_upstream import MockUpstream

QUOTA = "/v1/admin/tiers/free/quotas/text_generation"


def test_tier_quota_set_unlimited_and_reset(upstream: MockUpstream) -> None:
    with flag_gateway(upstream.base_url) as url:
        shown = admin(url, "GET", QUOTA).json()
        assert shown["source"] == "tiers.yaml" and shown["quota"]["requests_per_day"] is None
        put = admin(url, "PUT", QUOTA, json={"requests_per_day": 2})
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "runtime" and put.json()["quota"]["requests_per_day"] == 2
        assert [chat(url, "free").status_code for _ in range(3)] == [200, 200, 429]
        assert chat(url, "pro").status_code == 200  # another tier: untouched
        shown = _user(url, "GET", "/v1/quota").json()["capabilities"]["text_generation"]
        assert shown["requests"]["limit"] == 2  # what the user sees follows too
        unlimited = admin(url, "PUT", QUOTA, json={"requests_per_day": -1, "tokens_per_day": None})
        assert unlimited.json()["quota"]["requests_per_day"] is None
        assert chat(url, "free").status_code == 200
        admin(url, "PUT", QUOTA, json={"requests_per_day": 1})
        assert chat(url, "free").status_code == 429
        reset = admin(url, "DELETE", QUOTA).json()
        assert reset["source"] == "tiers.yaml"
        assert chat(url, "free").status_code == 200
        actions = [e["action"] for e in admin(url, "GET", "/v1/admin/audit").json()["data"]]
        assert actions[:4] == [
            "tier_quota.reset", "tier_quota.set", "tier_quota.set", "tier_quota.set",
        ]  # fmt: skip


def test_tier_quota_input_is_checked(upstream: MockUpstream) -> None:
    with flag_gateway(upstream.base_url) as url:
        assert admin(url, "GET", "/v1/admin/tiers/gold/quotas/text_generation").status_code == 404
        assert admin(url, "GET", "/v1/admin/tiers/free/quotas/flying").status_code == 404
        for bad in ({"requests_per_day": 1.5}, {"requests_per_day": -2}, {"nope": 1}, [1]):
            answer = admin(url, "PUT", QUOTA, json=bad)
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["type"] == "invalid_request_error"
        assert admin(url, "PUT", QUOTA, token="wrong", json={}).status_code == 401


def _user(url: str, method: str, path: str, **kw: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {KEYS['free']}"}
    return httpx.request(method, url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def test_quota_request_approved_sets_the_users_override(upstream: MockUpstream) -> None:
    with flag_gateway(upstream.base_url) as url:
        admin(url, "PUT", QUOTA, json={"requests_per_day": 1})
        assert [chat(url, "free").status_code for _ in range(2)] == [200, 429]
        body = {"capability": "text_generation", "requested": {"requests_per_day": 4}}
        filed = _user(url, "POST", "/v1/quota/requests", json={**body, "reason": "demo day"})
        assert filed.status_code == 201, filed.text
        request_id = filed.json()["id"]
        assert filed.json()["status"] == "pending" and filed.json()["user"] == "user-free"
        mine = _user(url, "GET", "/v1/quota/requests").json()["data"]
        assert [r["id"] for r in mine] == [request_id]
        listed = admin(url, "GET", "/v1/admin/quota-requests?status=pending").json()["data"]
        assert [r["id"] for r in listed] == [request_id]
        approved = admin(url, "POST", f"/v1/admin/quota-requests/{request_id}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"
        assert approved.json()["granted"] == {"requests_per_day": 4}
        override = admin(url, "GET", "/v1/admin/users/user-free").json()
        assert override["quotas"]["text_generation"]["requests_per_day"] == 4
        assert [chat(url, "free").status_code for _ in range(4)] == [200, 200, 200, 429]
        again = admin(url, "POST", f"/v1/admin/quota-requests/{request_id}/deny")
        assert again.status_code == 409
        actions = [e["action"] for e in admin(url, "GET", "/v1/admin/audit").json()["data"]]
        assert actions[:2] == ["quota_request.approve", "quota_request.create"]


def test_quota_request_denied_and_bad_input(upstream: MockUpstream) -> None:
    with flag_gateway(upstream.base_url) as url:
        body = {"capability": "text_generation", "requested": {"requests_per_day": 9}}
        request_id = _user(url, "POST", "/v1/quota/requests", json=body).json()["id"]
        denied = admin(
            url, "POST", f"/v1/admin/quota-requests/{request_id}/deny", json={"note": "no"}
        )
        assert denied.json()["status"] == "denied" and denied.json()["note"] == "no"
        assert admin(url, "GET", "/v1/admin/users/user-free").json()["quotas"] == {}
        assert admin(url, "POST", "/v1/admin/quota-requests/qr_nope/approve").status_code == 404
        for bad in (
            {"capability": "flying", "requested": {"requests_per_day": 1}},
            {"capability": "text_generation", "requested": {}},
            {"capability": "text_generation", "requested": {"requests_per_day": -1}},
            {"capability": "text_generation"},
        ):
            assert _user(url, "POST", "/v1/quota/requests", json=bad).status_code == 400, bad
        anonymous = httpx.post(url + "/v1/quota/requests", json=body, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["type"] == "authentication_error"
