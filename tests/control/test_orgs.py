"""Organizations and teams on a served gateway (real redis-server): allow-lists narrowing down,
team admins running their team's keys within its limits, the 429 naming the team's window,
usage records carrying org and team, and the authorization matrix over every new endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.http.admin.routes import OPERATIONS
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.redis_fixture import RedisServer
from tests.ui.signin import sign_in

ADMIN = "env-admin-token-orgs-0123456789"
CHAT = {"model": "ok", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


@pytest.fixture
def gw(start_gateway: StartGateway, redis: RedisServer) -> RunningGateway:
    return start_gateway(runtime=Runtime(redis_url=redis.url, admin_token=Secret(ADMIN)))


def call(
    gw: RunningGateway, method: str, path: str, token: str = ADMIN, **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, gw.url + path, headers=headers, timeout=10, **kw)


def made(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 201, answer.text
    document: dict[str, Any] = answer.json()
    return document


def setup(gw: RunningGateway, **team_limits: Any) -> dict[str, str]:
    """Org ``acme`` (Paris, models ok and ok-b) with teams ``ml`` (model ok) and ``web``, and
    a team admin and a team viewer token for ``ml``."""
    made(
        call(
            gw,
            "POST",
            "/v1/admin/orgs",
            json={"id": "acme", "timezone": "Europe/Paris", "limits": {"models": ["ok", "ok-b"]}},
        )
    )
    limits = {"models": ["ok"], "budget_usd": {"day": 5}, **team_limits}
    made(
        call(
            gw,
            "POST",
            "/v1/admin/teams",
            json={
                "id": "ml",
                "org": "acme",
                "tier": "free",
                "members": ["ann", "bob"],
                "limits": limits,
            },
        )
    )
    made(
        call(
            gw,
            "POST",
            "/v1/admin/teams",
            json={"id": "web", "org": "acme", "tier": "free", "members": ["cat"]},
        )
    )
    admin = made(call(gw, "POST", "/v1/admin/teams/ml/tokens", json={"role": "team_admin"}))
    viewer = made(call(gw, "POST", "/v1/admin/teams/ml/tokens", json={"role": "team_viewer"}))
    return {"admin": admin["token"], "admin_id": admin["id"], "viewer": viewer["token"]}


def chat(gw: RunningGateway, key: str, model: str = "ok") -> httpx.Response:
    return call(gw, "POST", "/v1/chat/completions", key, json={**CHAT, "model": model})


def test_allow_lists_narrow_downward_on_every_write(gw: RunningGateway) -> None:
    setup(gw)
    wider = call(
        gw,
        "POST",
        "/v1/admin/teams",
        json={"id": "x", "org": "acme", "tier": "free", "limits": {"models": ["code-ok"]}},
    )
    assert wider.status_code == 400 and "not allowed by organization" in wider.text
    narrowing = call(gw, "PATCH", "/v1/admin/orgs/acme", json={"limits": {"models": ["ok-b"]}})
    assert narrowing.status_code == 400 and "team 'ml'" in narrowing.text
    key = call(
        gw,
        "POST",
        "/v1/admin/keys",
        json={"user": "ann", "tier": "free", "team": "ml", "models": ["ok-b"]},
    )
    assert key.status_code == 400 and "team 'ml'" in key.text
    outsider = call(
        gw, "POST", "/v1/admin/keys", json={"user": "zed", "tier": "free", "team": "ml"}
    )
    assert outsider.status_code == 400 and "not a member" in outsider.text
    bad_zone = call(gw, "POST", "/v1/admin/orgs", json={"id": "z", "timezone": "Mars/Base"})
    assert bad_zone.status_code == 400 and bad_zone.json()["error"]["param"] == "timezone"
    bad_id = call(gw, "POST", "/v1/admin/orgs", json={"id": "a}b"})
    assert bad_id.status_code == 400


def test_a_team_admin_runs_its_keys_within_the_teams_limits(gw: RunningGateway) -> None:
    tokens = setup(gw)
    team_admin = tokens["admin"]
    over = call(
        gw,
        "POST",
        "/v1/admin/teams/ml/keys",
        team_admin,
        json={"user": "ann", "budget_usd": {"day": 6}},
    )
    assert over.status_code == 400 and "team's limit" in over.text
    outsider = call(gw, "POST", "/v1/admin/teams/ml/keys", team_admin, json={"user": "cat"})
    assert outsider.status_code == 400
    key = made(
        call(
            gw,
            "POST",
            "/v1/admin/teams/ml/keys",
            team_admin,
            json={"user": "ann", "budget_usd": {"day": 1}},
        )
    )
    assert key["team"] == "ml" and key["tier"] == "free"
    assert chat(gw, key["key"]).status_code == 200
    refused = chat(gw, key["key"], "ok-b")  # the org allows it, the team does not
    assert refused.status_code == 403, refused.text
    listed = call(gw, "GET", "/v1/admin/teams/ml/keys", tokens["viewer"])
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    rotated = call(
        gw, "POST", f"/v1/admin/teams/ml/keys/{key['id']}/rotate", team_admin, json={"grace_s": 0}
    )
    assert rotated.status_code == 200 and chat(gw, key["key"]).status_code == 401
    assert chat(gw, rotated.json()["key"]).status_code == 200
    revoked = call(gw, "DELETE", f"/v1/admin/teams/ml/keys/{key['id']}", team_admin)
    assert revoked.status_code == 200 and chat(gw, rotated.json()["key"]).status_code == 401
    log = call(gw, "GET", "/v1/admin/audit").json()["data"]
    actor = f"token:{tokens['admin_id']}"
    assert [(e["action"], e["actor"]) for e in log if e["id"] == key["id"]] == [
        ("team_key.revoke", actor),
        ("team_key.rotate", actor),
        ("team_key.create", actor),
    ]
    assert key["key"] not in str(log)


def test_a_team_limit_refuses_with_its_level_and_window_and_records_carry_org_and_team(
    gw: RunningGateway,
) -> None:
    tokens = setup(gw, requests={"minute": 2, "month": 1000})
    key = made(call(gw, "POST", "/v1/admin/teams/ml/keys", tokens["admin"], json={"user": "bob"}))
    if time.time() % 60 > 55:  # two calls straddling a minute would see two windows
        time.sleep(60 - time.time() % 60 + 0.1)
    assert [chat(gw, key["key"]).status_code for _ in range(2)] == [200, 200]
    refused = chat(gw, key["key"])
    assert refused.status_code == 429, refused.text
    assert refused.headers["x-gateway-limit-level"] == "team"
    assert refused.headers["x-gateway-limit-window"] == "minute"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Team 'ml'" in refused.json()["error"]["message"]
    usage = call(gw, "GET", "/v1/admin/teams/ml/usage", tokens["viewer"]).json()
    assert usage["minute"]["requests"] == 2 and usage["timezone"] == "Europe/Paris"
    deadline = time.time() + 10
    records: list[dict[str, Any]] = []
    while time.time() < deadline and len(records) < 2:
        answer = call(gw, "GET", "/v1/admin/usage/records?user=bob").json()
        records = [r for r in answer["data"] if r["status"] == 200]
        time.sleep(0.05)
    assert [(r["org"], r["team"]) for r in records] == [("acme", "ml")] * 2


def test_a_key_stops_when_its_user_leaves_the_team_or_the_token_is_deleted(
    gw: RunningGateway,
) -> None:
    tokens = setup(gw)
    key = made(
        call(gw, "POST", "/v1/admin/keys", json={"user": "bob", "tier": "free", "team": "ml"})
    )
    assert chat(gw, key["key"]).status_code == 200
    leaving = call(gw, "PATCH", "/v1/admin/teams/ml", json={"members": ["ann"]})
    assert leaving.status_code == 409  # a bound key must be revoked first
    assert call(gw, "GET", "/v1/admin/teams/ml", tokens["admin"]).status_code == 200
    assert call(gw, "DELETE", f"/v1/admin/tokens/{tokens['admin_id']}").status_code == 200
    assert call(gw, "GET", "/v1/admin/teams/ml", tokens["admin"]).status_code == 401
    assert call(gw, "DELETE", "/v1/admin/teams/ml").status_code == 409  # it still has keys


# -- the authorization matrix ---------------------------------------------------------------

NEW = [op for op in OPERATIONS if op.path.startswith(("/v1/admin/orgs", "/v1/admin/teams"))]


def _path(path: str, team: str, key_id: str) -> str:
    return path.replace("{org}", "acme").replace("{team}", team).replace("{id}", key_id)


def _body(op_path: str, method: str) -> dict[str, Any] | None:
    if method in ("GET", "DELETE"):
        return None
    if op_path.endswith("/tokens"):
        return {"role": "team_admin"}
    if op_path.endswith("/keys"):
        return {"user": "ann"}
    if op_path == "/v1/admin/orgs":
        return {"id": "other"}
    if op_path == "/v1/admin/teams":
        return {"id": "other", "org": "acme", "tier": "free"}
    if op_path.endswith("/rotate"):
        return {"grace_s": 0}
    return {"limits": {"budget_usd": {"day": 1000}}}  # a PATCH that raises the limits


def test_the_authorization_matrix_over_every_new_endpoint(gw: RunningGateway) -> None:
    """A team admin reaches only its own team's team endpoints; it cannot read another team,
    raise its own limits, or mint any token; a team viewer only reads its own team."""
    tokens = setup(gw)
    own = made(
        call(gw, "POST", "/v1/admin/keys", json={"user": "ann", "tier": "free", "team": "ml"})
    )["id"]
    other = made(
        call(gw, "POST", "/v1/admin/keys", json={"user": "cat", "tier": "free", "team": "web"})
    )["id"]
    assert len(NEW) >= 16
    for op in NEW:
        for who in ("admin", "viewer"):
            token = tokens[who]
            for team, key_id in (("ml", own), ("web", other)):
                answer = call(
                    gw,
                    op.method,
                    _path(op.path, team, key_id),
                    token,
                    json=_body(op.path, op.method),
                )
                allowed = op.role in ("team_viewer", "team_admin") and team == "ml"
                if op.role == "team_admin" and who == "viewer":
                    allowed = False
                where = f"{who} {op.method} {op.path} on {team}: {answer.status_code}"
                if allowed:
                    assert answer.status_code < 400, where + answer.text
                else:
                    assert answer.status_code in (401, 403), where + answer.text
                if op.method == "DELETE" and answer.status_code < 400:
                    own = made(
                        call(
                            gw,
                            "POST",
                            "/v1/admin/keys",
                            json={"user": "ann", "tier": "free", "team": "ml"},
                        )
                    )["id"]
    minted = call(gw, "POST", "/v1/admin/tokens", tokens["admin"], json={"role": "admin"})
    assert minted.status_code in (401, 403)
    limits = call(gw, "GET", "/v1/admin/teams/ml", tokens["admin"]).json()["limits"]
    assert limits["budget_usd"] == {"day": 5}  # unchanged by the team admin's PATCH


def gateway_cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_orgs_and_teams_commands_drive_the_admin_api(gw: RunningGateway) -> None:
    env = {"GATEWAY_URL": gw.url, "GATEWAY_ADMIN_TOKEN": ADMIN}
    limits = '{"tokens": {"month": 100000}}'
    org = gateway_cli(
        "orgs", "create", "acme", "--timezone", "Asia/Tokyo", "--limits", limits, env=env
    )
    assert org.returncode == 0, org.stderr
    assert json.loads(org.stdout)["limits"] == {"tokens": {"month": 100000}}
    team = gateway_cli(
        "teams", "create", "ml", "--org", "acme", "--tier", "free", "--members", "ann,bob", env=env
    )
    assert team.returncode == 0, team.stderr
    token = json.loads(gateway_cli("teams", "token", "ml", "--role", "team_admin", env=env).stdout)[
        "token"
    ]
    as_team = {**env, "GATEWAY_ADMIN_TOKEN": token}
    key = gateway_cli("teams", "key", "ml", "--user", "ann", "--budget-day", "2", env=as_team)
    assert key.returncode == 0, key.stderr
    assert chat(gw, json.loads(key.stdout)["key"]).status_code == 200
    usage = json.loads(gateway_cli("teams", "usage", "ml", env=as_team).stdout)
    assert usage["timezone"] == "Asia/Tokyo"
    refused = gateway_cli("orgs", "list", env=as_team)
    assert refused.returncode == 1 and "operator token" in refused.stderr
    bad = gateway_cli("orgs", "update", "acme", "--limits", "{oops", env=env)
    assert bad.returncode == 1 and "--limits must be JSON" in bad.stderr


def test_the_dashboard_shows_organizations_teams_and_usage(gw: RunningGateway) -> None:
    tokens = setup(gw, requests={"day": 100})
    key = made(call(gw, "POST", "/v1/admin/teams/ml/keys", tokens["admin"], json={"user": "ann"}))
    assert chat(gw, key["key"]).status_code == 200
    with httpx.Client(base_url=gw.url, timeout=10) as browser:
        assert sign_in(browser, ADMIN).status_code == 303
        page = browser.get("/ui/orgs")
        assert page.status_code == 200, page.text
        assert 'id="org-acme"' in page.text and "Europe/Paris" in page.text
        row = page.text.split('data-team="ml"')[1].split("</tr>")[0]
        assert "ann, bob" in row and "requests: 100/day" in row and "/ 1 /" in row
        assert 'data-team="web"' in page.text
    with httpx.Client(base_url=gw.url, timeout=10) as browser:
        signed = sign_in(browser, tokens["admin"])  # a team token is no operator
        assert signed.headers["location"] == "/ui/teams/ml"  # tests/ui/test_team_pages.py
        assert browser.get("/ui/orgs").status_code == 403
