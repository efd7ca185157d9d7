"""Organizations and teams attacked: a deleted team's tokens, a team admin reaching past its
team, ids and limits built to break store keys or counters, a team token on the dashboard
(its own team's pages only: tests/ui/test_team_pages.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.control.test_orgs import ADMIN, call, chat, gw, made, setup
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES
from tests.ui.signin import sign_in

__all__ = ["gw"]  # the served gateway (real redis-server) of test_orgs.py


def test_a_deleted_teams_id_and_tokens_are_never_given_to_a_new_team(
    gw: RunningGateway,
) -> None:
    """A new team under a deleted team's id would read its usage records (they carry the id)
    and be reached by its tokens: the id is retired, the tokens deleted with the team."""
    tokens = setup(gw)
    bound = {"user": "ann", "tier": "free", "team": "ml"}
    key = made(call(gw, "POST", "/v1/admin/keys", json=bound))
    assert chat(gw, key["key"]).status_code == 200
    assert call(gw, "DELETE", f"/v1/admin/keys/{key['id']}").status_code == 200
    assert call(gw, "DELETE", "/v1/admin/teams/ml").status_code == 200
    for token in (tokens["admin"], tokens["viewer"]):
        assert call(gw, "GET", "/v1/admin/teams/ml", token).status_code == 401
    listed = call(gw, "GET", "/v1/admin/tokens").json()["data"]
    assert tokens["admin_id"] not in [t["id"] for t in listed]
    again = {"id": "ml", "org": "acme", "tier": "free", "members": ["zoe"]}
    reused = call(gw, "POST", "/v1/admin/teams", json=again)
    assert reused.status_code == 409, reused.text
    assert reused.json()["error"]["param"] == "id"
    made(call(gw, "POST", "/v1/admin/teams", json={**again, "id": "ml-2"}))
    log = call(gw, "GET", "/v1/admin/audit").json()["data"]
    assert {"team.delete", "team.retire_id", "team_token.delete"} <= {e["action"] for e in log}


def test_a_team_admin_cannot_choose_tier_team_or_limits_above_its_team(
    gw: RunningGateway,
) -> None:
    tokens = setup(gw, requests={"minute": 10}, tokens={"minute": 100}, max_parallel=2)
    admin = tokens["admin"]
    for body in (
        {"user": "ann", "tier": "pro"},
        {"user": "ann", "team": "web"},
        {"user": "ann", "models": ["ok-b"]},  # the org allows it, the team does not
        {"user": "ann", "rpm": 11},
        {"user": "ann", "tpm": 101},
        {"user": "ann", "max_parallel": 3},
        {"user": "ann", "budget_usd": {"day": 5.01}},
        {"user": "ann", "budget_usd": {"day": -1}},
        {"user": "ann", "budget_usd": {"day": float("1e308")}},
        {"user": "cat"},  # a member of another team
        {"user": ["ann"]},
    ):
        answer = call(gw, "POST", "/v1/admin/teams/ml/keys", admin, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["type"] == "invalid_request_error"
    key = made(call(gw, "POST", "/v1/admin/teams/ml/keys", admin, json={"user": "ann"}))
    assert (key["tier"], key["team"]) == ("free", "ml")
    assert chat(gw, key["key"], "ok-b").status_code == 403  # the team's list, intersected


@pytest.mark.parametrize(
    "bad_id", ["{ml}", "ml}x{", "a/b", "Ml", "é", "a" * 64, "", "-x", "a b", "a:b", "a\nb"]
)
def test_ids_that_would_break_store_keys_are_refused(gw: RunningGateway, bad_id: str) -> None:
    setup(gw)
    org = call(gw, "POST", "/v1/admin/orgs", json={"id": bad_id})
    team = call(gw, "POST", "/v1/admin/teams", json={"id": bad_id, "org": "acme", "tier": "free"})
    for answer in (org, team):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "id"


def test_limits_zones_and_paths_built_to_break_are_refused_cleanly(gw: RunningGateway) -> None:
    setup(gw)
    for limits in (
        {"budget_usd": {"day": -1}},
        {"budget_usd": {"day": "1"}},
        {"requests": {"day": 1.5}},
        {"requests": {"day": 10**13}},
        {"requests": {"week": 1}},
        {"max_parallel": 0},
        {"max_parallel": True},
        {"models": "ok"},
        {"models": ["no-such-model"]},
        {"other": 1},
        [],
    ):
        answer = call(gw, "PATCH", "/v1/admin/teams/ml", json={"limits": limits})
        assert answer.status_code == 400, (limits, answer.text)
    for raw in (b'{"limits": {"budget_usd": {"day": 1e400}}}', b'{"limits": {"requests": '
                b'{"day": NaN}}}', b'{"limits": {"max_parallel": 1e999}}'):  # fmt: skip
        answer = call(gw, "PATCH", "/v1/admin/teams/ml", content=raw)
        assert answer.status_code == 400, (raw, answer.text)
    for members in ([""], ["a" * 201], "ann", [1], ["ann"] * 10_001):
        answer = call(gw, "PATCH", "/v1/admin/teams/ml", json={"members": members})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "members"
    for zone in ("Mars/Olympus", "../../etc/passwd", "", " UTC", "utc", 5, "Europe/Paris\x00"):
        answer = call(gw, "PATCH", "/v1/admin/orgs/acme", json={"timezone": zone})
        assert answer.status_code == 400, (zone, answer.text)
        assert answer.json()["error"]["param"] == "timezone"
    far = call(gw, "PATCH", "/v1/admin/orgs/acme", json={"timezone": "Pacific/Kiritimati"})
    assert far.status_code == 200  # UTC+14: its windows are computed like any
    assert call(gw, "GET", "/v1/admin/teams/ml/usage").status_code == 200
    for path in ("/v1/admin/teams/a%2Fb/usage", "/v1/admin/teams/%7Bml%7D/keys",
                 "/v1/admin/teams/ml%0d%0aX-Bad:1/usage", "/v1/admin/orgs/%C3%A9"):  # fmt: skip
        answer = call(gw, "GET", path)
        assert answer.status_code == 404, (path, answer.text)
        assert "error" in answer.json()


def test_a_team_token_reads_only_its_own_teams_records(gw: RunningGateway) -> None:
    tokens = setup(gw)
    for query in ("team=web", "team=-", "team=ml%00"):
        answer = call(gw, "GET", f"/v1/admin/teams/ml/records?{query}", tokens["viewer"])
        assert answer.status_code in (400, 403), (query, answer.text)
    for path in ("/v1/admin/usage/records?team=ml", "/v1/admin/analytics?team=ml",
                 "/v1/admin/usage/export?team=ml", "/v1/admin/orgs", "/v1/admin/keys",
                 "/v1/admin/teams/web/records", "/v1/admin/teams"):  # fmt: skip
        answer = call(gw, "GET", path, tokens["admin"])
        assert answer.status_code in (401, 403), (path, answer.text)


def test_a_team_tokens_dashboard_session_sees_no_operator_page(gw: RunningGateway) -> None:
    tokens = setup(gw)
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        answer = sign_in(http, tokens["admin"])
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/teams/ml"
        page: Any = http.get("/ui/orgs", follow_redirects=False)
        assert page.status_code == 403
        assert 'id="org-acme"' not in page.text and 'data-team="web"' not in page.text


def test_a_team_key_is_served_at_its_teams_current_tier(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    """An operator moving a team to a lower tier moves its keys with it at once (the key
    keeps the tier it was minted with in its document, not in what it is served)."""
    tiers = {
        "free": {"routes": {**DEFAULT_ROUTES, "text": ["ok"]}},
        "pro": {"routes": {**DEFAULT_ROUTES, "text": ["ok", "ok-b"]}},
    }
    gw = start_gateway(tiers, runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))
    made(call(gw, "POST", "/v1/admin/orgs", json={"id": "acme"}))
    team = {"id": "ml", "org": "acme", "tier": "pro", "members": ["ann"]}
    made(call(gw, "POST", "/v1/admin/teams", json=team))
    token = made(call(gw, "POST", "/v1/admin/teams/ml/tokens", json={"role": "team_admin"}))
    key = made(call(gw, "POST", "/v1/admin/teams/ml/keys", token["token"], json={"user": "ann"}))
    assert key["tier"] == "pro" and chat(gw, key["key"], "ok-b").status_code == 200
    assert call(gw, "PATCH", "/v1/admin/teams/ml", json={"tier": "free"}).status_code == 200
    refused = chat(gw, key["key"], "ok-b")
    assert refused.status_code == 403, refused.text
    assert call(gw, "GET", "/v1/quota", key["key"]).json()["tier"] == "free"
    assert chat(gw, key["key"], "ok").status_code == 200


def test_team_refusals_on_the_messages_api_are_anthropic_shaped(gw: RunningGateway) -> None:
    setup(gw, requests={"day": 1})
    bound = {"user": "ann", "tier": "free", "team": "ml"}
    key = made(call(gw, "POST", "/v1/admin/keys", json=bound))
    body = {"model": "ok", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": key["key"], "anthropic-version": "2023-06-01"}
    first = httpx.post(gw.url + "/v1/messages", headers=headers, json=body, timeout=10)
    assert first.status_code == 200, first.text
    over = httpx.post(gw.url + "/v1/messages", headers=headers, json=body, timeout=10)
    assert over.status_code == 429, over.text
    assert over.json()["type"] == "error" and over.json()["error"]["type"] == "rate_limit_error"
    assert over.headers["x-gateway-limit-level"] == "team"
    outside = httpx.post(gw.url + "/v1/messages", headers=headers,
                         json={**body, "model": "ok-b"}, timeout=10)  # fmt: skip
    assert outside.status_code == 403, outside.text
    assert outside.json()["error"]["type"] == "permission_error"
