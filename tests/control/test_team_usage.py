"""A team's usage on a served gateway (real redis-server): the team's analytics and records for
its own tokens only, the operators' analytics by organization and team, and ``/v1/quota``
showing a team key's organization and team limits with what is left in each window."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import RunningGateway
from tests.control.test_orgs import call, chat, gw, made, setup

__all__ = ["gw"]  # the fixture, shared with test_orgs.py


def records_of(gw: RunningGateway, token: str, team: str, count: int) -> list[dict[str, Any]]:
    """The team's successful records, once ``count`` of them are written (settles run after
    the answers)."""
    deadline = time.time() + 10
    found: list[dict[str, Any]] = []
    while time.time() < deadline:
        answer = call(gw, "GET", f"/v1/admin/teams/{team}/records", token)
        assert answer.status_code == 200, answer.text
        found = [r for r in answer.json()["data"] if r["status"] == 200]
        if len(found) >= count:
            break
        time.sleep(0.05)
    return found


def requests_by(rows: list[dict[str, Any]], *names: str) -> dict[tuple[str, ...], int]:
    return {tuple(row[n] for n in names): row["requests"] for row in rows}


def test_a_team_reads_its_own_usage_and_operators_every_teams(gw: RunningGateway) -> None:
    tokens = setup(gw, requests={"day": 100}, tokens={"month": 5000})
    org_limits = {"models": ["ok", "ok-b"], "requests": {"day": 50}}
    updated = call(gw, "PATCH", "/v1/admin/orgs/acme", json={"limits": org_limits})
    assert updated.status_code == 200, updated.text
    web = made(call(gw, "POST", "/v1/admin/teams/web/tokens", json={"role": "team_viewer"}))
    ann = made(call(gw, "POST", "/v1/admin/teams/ml/keys", tokens["admin"], json={"user": "ann"}))
    cat = made(call(gw, "POST", "/v1/admin/keys", json={"user": "cat", "tier": "free",
                                                       "team": "web"}))  # fmt: skip
    for key, times in ((ann["key"], 3), (cat["key"], 2), (gw.key(), 1)):
        for _ in range(times):
            assert chat(gw, key).status_code == 200
    mine = records_of(gw, tokens["viewer"], "ml", 3)
    assert {(r["user"], r["org"], r["team"]) for r in mine} == {("ann", "acme", "ml")}
    assert len(mine) == 3
    assert len(records_of(gw, web["token"], "web", 2)) == 2

    by_user = call(gw, "GET", "/v1/admin/teams/ml/analytics?group_by=user,team&bucket=all",
                   tokens["viewer"])  # fmt: skip
    assert by_user.status_code == 200, by_user.text
    assert requests_by(by_user.json()["data"], "user", "team") == {("ann", "ml"): 3}
    assert (
        call(gw, "GET", "/v1/admin/teams/ml/analytics?team=web", tokens["admin"]).status_code == 403
    )
    assert call(gw, "GET", "/v1/admin/teams/web/analytics", tokens["admin"]).status_code == 403
    assert call(gw, "GET", "/v1/admin/teams/web/records", tokens["viewer"]).status_code == 403
    assert call(gw, "GET", "/v1/admin/analytics", tokens["admin"]).status_code in (401, 403)
    assert call(gw, "GET", "/v1/admin/usage/records", web["token"]).status_code in (401, 403)

    every = call(gw, "GET", "/v1/admin/analytics?group_by=org,team&bucket=all").json()["data"]
    assert requests_by(every, "org", "team") == {("-", "-"): 1, ("acme", "ml"): 3,
                                                 ("acme", "web"): 2}  # fmt: skip
    acme = call(gw, "GET", "/v1/admin/analytics?org=acme&group_by=team&bucket=all").json()["data"]
    assert requests_by(acme, "team") == {("ml",): 3, ("web",): 2}
    alone = call(gw, "GET", "/v1/admin/usage/records?team=-").json()["data"]
    assert {r["user"] for r in alone if r["status"] == 200} == {"user-free"}

    quota = call(gw, "GET", "/v1/quota", ann["key"]).json()
    levels = {level["level"]: level for level in quota["levels"]}
    assert levels["org"]["id"] == "acme" and levels["org"]["timezone"] == "Europe/Paris"
    org_day = levels["org"]["windows"]["day"]
    assert org_day["requests"] == {"limit": 50, "used": 5, "reserved": 0, "remaining": 45}
    assert set(levels["org"]["windows"]) == {"day"}
    team = levels["team"]["windows"]
    assert team["day"]["requests"]["remaining"] == 97
    tokens_used = sum(r["total_tokens"] for r in mine)
    assert team["month"]["tokens"] == {
        "limit": 5000, "used": tokens_used, "reserved": 0, "remaining": 5000 - tokens_used,
    }  # fmt: skip
    assert team["day"]["usd"]["limit_usd"] == 5 and "resets_at" in team["day"]
    assert "levels" not in call(gw, "GET", "/v1/quota", gw.key()).json()
    month = time.strftime("%Y-%m", time.gmtime())
    statement = call(gw, "GET", f"/v1/me/statements/{month}", ann["key"])
    assert statement.status_code == 200, statement.text
    lines = statement.json()["usage"]
    assert [(line["org"], line["team"], line["requests"]) for line in lines] == [("acme", "ml", 3)]
