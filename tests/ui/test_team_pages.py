"""A team token's dashboard session (issue 30): scoped to its one team, re-checked on every
request, read-only for a team viewer; the team's pages show its limits, use, keys, members,
usage and month, and export only its records. The authorization matrix runs over every team
page and the team endpoints the pages call, for a team admin, a team viewer, another team's
admin, an operator viewer and a revoked token (real redis-server, a served gateway)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.batches.test_team_owner_refused import _write_as_another_replica
from tests.conftest import RunningGateway
from tests.control.test_orgs import ADMIN, call, chat, gw, made, setup
from tests.redis_fixture import RedisServer
from tests.ui.signin import sign_in

__all__ = ["gw"]  # the served gateway (real redis-server) of tests/control/test_orgs.py
XSS = '<img src=x onerror="alert(1)">'
TEAM_PAGES = ("", "/keys", "/members", "/usage", "/statement")
OPERATOR_PAGES = ("/ui/overview", "/ui/orgs", "/ui/keys", "/ui/analytics", "/ui/statements")
CSV_TYPE, XLSX_TYPE = "text/csv", "application/vnd.openxmlformats"


def session(gw: RunningGateway, token: str) -> httpx.Client:
    """A browser-like client signed in with ``token`` (the caller closes it)."""
    http = httpx.Client(base_url=gw.url, timeout=10)
    signed = sign_in(http, token)
    assert signed.status_code == 303, signed.text
    return http


def csrf(http: httpx.Client, path: str) -> str:
    return http.get(path).text.split('name="csrf-token" content="')[1].split('"')[0]


@pytest.fixture
def tokens(gw: RunningGateway) -> dict[str, str]:
    """``acme`` with teams ``ml`` (ann, bob) and ``web`` (cat); team tokens for both, and an
    operator viewer token."""
    found = setup(gw)
    web = made(call(gw, "POST", "/v1/admin/teams/web/tokens", json={"role": "team_admin"}))
    viewer = made(call(gw, "POST", "/v1/admin/tokens", json={"role": "viewer"}))
    return {**found, "web_admin": web["token"], "operator_viewer": viewer["token"]}


@pytest.fixture
def sessions(gw: RunningGateway, tokens: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    clients = {who: session(gw, tokens[who])
               for who in ("admin", "viewer", "web_admin", "operator_viewer")}  # fmt: skip
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()


def test_a_team_token_signs_in_to_its_own_teams_pages(
    gw: RunningGateway, tokens: dict[str, str]
) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        signed = sign_in(http, tokens["admin"])
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/teams/ml"
        for path in ("/ui/", "/ui/me"):
            assert http.get(path).headers["location"] == "/ui/teams/ml"
        assert http.get("/ui/me/statement").headers["location"] == "/ui/teams/ml/statement"
        page = http.get("/ui/teams/ml")
        assert page.status_code == 200, page.text
        assert 'data-role="team_admin"' in page.text and 'data-team="ml"' in page.text
        nav = page.text.split("<nav>")[1].split("</nav>")[0]
        assert "/ui/teams/ml/keys" in nav and "/ui/orgs" not in nav and "/ui/keys" not in nav


def test_the_authorization_matrix_over_the_team_pages(
    gw: RunningGateway, tokens: dict[str, str], sessions: dict[str, httpx.Client]
) -> None:
    """Each session reaches exactly what its role allows: a team's sessions their own team's
    pages and no operator page, nor another team's (403, before saying whether it exists)."""
    wrong = []

    def expect(who: str, path: str, status: int) -> None:
        answer = sessions[who].get(path)
        if answer.status_code != status:
            wrong.append(f"{who} GET {path}: {answer.status_code}, expected {status}")
        elif status >= 400 and 'id="refused"' not in answer.text and "Not found" not in answer.text:
            wrong.append(f"{who} GET {path}: not the UI's refusal page")

    for suffix in TEAM_PAGES:
        for who in ("admin", "viewer", "operator_viewer"):
            expect(who, "/ui/teams/ml" + suffix, 200)
        expect("web_admin", "/ui/teams/ml" + suffix, 403)
        expect("admin", "/ui/teams/web" + suffix, 403)
        expect("web_admin", "/ui/teams/web" + suffix, 200)
    for path in OPERATOR_PAGES:
        for who in ("admin", "viewer", "web_admin"):
            expect(who, path, 403)
        expect("operator_viewer", path, 200)
    expect("admin", "/ui/teams/nope", 403)  # no other team, existing or not
    expect("operator_viewer", "/ui/teams/nope", 404)
    expect("admin", "/ui/teams/ml/nope", 404)
    assert not wrong, wrong


def test_the_authorization_matrix_over_the_team_endpoints_with_a_session(
    gw: RunningGateway, tokens: dict[str, str], sessions: dict[str, httpx.Client]
) -> None:
    """The endpoints the team pages call, with the session cookie: a team admin writes its own
    team's keys (with the CSRF token only), a team viewer and an operator viewer read, another
    team's admin gets 403; a team session is no operator anywhere else."""
    tokens_csrf = {who: csrf(http, "/ui/teams/ml" if who != "web_admin" else "/ui/teams/web")
                   for who, http in sessions.items()}  # fmt: skip
    for who, allowed in (("admin", True), ("viewer", False), ("web_admin", False),
                         ("operator_viewer", False)):  # fmt: skip
        http = sessions[who]
        headers = {"x-csrf-token": tokens_csrf[who]}
        created = http.post("/v1/admin/teams/ml/keys", json={"user": "ann"}, headers=headers)
        assert (created.status_code == 201) == allowed, (who, created.text)
        if not allowed:
            assert created.status_code == 403, (who, created.text)
            continue
        key_id = created.json()["id"]
        no_csrf = http.post(f"/v1/admin/teams/ml/keys/{key_id}/rotate", json={})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
        rotated = http.post(f"/v1/admin/teams/ml/keys/{key_id}/rotate", json={"grace_s": 0},
                            headers=headers)  # fmt: skip
        assert rotated.status_code == 200, rotated.text
        assert http.delete(f"/v1/admin/teams/ml/keys/{key_id}").status_code == 403  # no CSRF
        revoked = http.delete(f"/v1/admin/teams/ml/keys/{key_id}", headers=headers)
        assert revoked.status_code == 200, revoked.text
    for who, status in (("admin", 200), ("viewer", 200), ("operator_viewer", 200),
                        ("web_admin", 403)):  # fmt: skip
        for path in ("/v1/admin/teams/ml/keys", "/v1/admin/teams/ml/export?format=json",
                     "/v1/admin/teams/ml/analytics", "/v1/admin/teams/ml"):  # fmt: skip
            answer = sessions[who].get(path)
            assert answer.status_code == status, (who, path, answer.text)
    for who in ("admin", "viewer"):
        http = sessions[who]
        for path in ("/v1/admin/keys", "/v1/admin/orgs", "/v1/admin/usage/export",
                     "/v1/admin/teams/web/keys", "/v1/admin/statements?month=2026-01",
                     "/v1/admin/teams/ml/export?team=web"):  # fmt: skip
            answer = http.get(path)
            assert answer.status_code == 403, (who, path, answer.text)
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
        headers = {"x-csrf-token": tokens_csrf[who]}
        minted = http.post("/v1/admin/tokens", json={"role": "admin"}, headers=headers)
        assert minted.status_code == 403, minted.text
        raised = http.patch("/v1/admin/teams/ml", json={"limits": {}}, headers=headers)
        assert raised.status_code == 403, raised.text
        for path in ("/v1/usage", "/v1/quota"):  # a team session is no operator, no user
            assert http.get(path).status_code == 401, (who, path)


def test_a_revoked_token_or_a_deleted_team_ends_the_session(
    gw: RunningGateway, tokens: dict[str, str], sessions: dict[str, httpx.Client]
) -> None:
    admin, web = sessions["admin"], sessions["web_admin"]
    assert admin.get("/ui/teams/ml/keys").status_code == 200
    assert call(gw, "DELETE", f"/v1/admin/tokens/{tokens['admin_id']}").status_code == 200
    page = admin.get("/ui/teams/ml/keys")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    assert admin.get("/v1/admin/teams/ml/keys").status_code == 401
    assert admin.get("/v1/admin/teams/ml/export").status_code == 401
    assert web.get("/ui/teams/web").status_code == 200
    assert call(gw, "DELETE", "/v1/admin/teams/web").status_code == 200
    assert web.get("/ui/teams/web").headers["location"] == "/ui/login"
    assert web.get("/v1/admin/teams/web/keys").status_code == 401
    assert sessions["viewer"].get("/ui/teams/ml").status_code == 200  # the others stay


def test_an_organization_deleted_under_its_team_ends_the_teams_sessions(
    gw: RunningGateway,
    redis: RedisServer,
    tokens: dict[str, str],
    sessions: dict[str, httpx.Client],
) -> None:
    """The API refuses to delete an organization with teams, but another replica's write may
    race that check: the team's sessions and its tokens end all the same, as its keys stop."""
    viewer = sessions["viewer"]
    assert viewer.get("/ui/teams/ml").status_code == 200
    _write_as_another_replica(redis, "orgs", "acme", None)
    deadline = time.monotonic() + 10  # the write reaches this replica within a second
    while (page := viewer.get("/ui/teams/ml")).status_code == 200:
        assert time.monotonic() < deadline, "the session outlived its team's organization"
        time.sleep(0.05)
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    assert viewer.get("/v1/admin/teams/ml/keys").status_code == 401
    bearer = {"authorization": f"Bearer {tokens['admin']}"}
    assert httpx.get(f"{gw.url}/v1/admin/teams/ml/keys", headers=bearer).status_code == 401


def test_the_team_pages_show_its_limits_use_members_usage_and_month(
    gw: RunningGateway, tokens: dict[str, str], sessions: dict[str, httpx.Client]
) -> None:
    limits = {"limits": {"models": ["ok"], "requests": {"day": 100}, "budget_usd": {"day": 5}}}
    assert call(gw, "PATCH", "/v1/admin/teams/ml", json=limits).status_code == 200
    key = made(call(gw, "POST", "/v1/admin/teams/ml/keys", tokens["admin"], json={"user": "ann"}))
    outside = made(call(gw, "POST", "/v1/admin/keys", json={"user": "zed", "tier": "free"}))
    for credential in (key["key"], key["key"], outside["key"]):
        assert chat(gw, credential).status_code == 200
    http = sessions["viewer"]
    overview = http.get("/ui/teams/ml").text
    assert "Europe/Paris" in overview and 'id="team-tier">free<' in overview
    row = overview.split('data-level="team" data-window="day" data-measure="requests">')[1]
    assert row.split("</tr>")[0].count("<td>") == 7 and "<td>100</td><td>2</td><td>98</td>" in row
    members = http.get("/ui/teams/ml/members").text
    assert "<td>ann</td><td>1</td>" in members and "<td>bob</td><td>0</td>" in members
    usage = http.get("/ui/teams/ml/usage?group_by=user").text
    assert key["id"] in usage and outside["id"] not in usage and "zed" not in usage
    assert 'href="/v1/admin/teams/ml/export?format=csv' in usage
    statement = http.get("/ui/teams/ml/statement").text
    assert 'id="statement-requests">2<' in statement and "zed" not in statement
    link = statement.split('id="download-csv" href="')[1].split('"')[0].replace("&amp;", "&")
    exported = http.get(link)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith(CSV_TYPE)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 2 and {row["key_id"] for row in rows} == {key["id"]}
    as_json = json.loads(http.get("/v1/admin/teams/ml/export?format=json").content)
    assert [record["team"] for record in as_json] == ["ml", "ml"]
    xlsx = http.get("/v1/admin/teams/ml/export?format=xlsx")
    assert xlsx.headers["content-type"].startswith(XLSX_TYPE) and xlsx.content[:2] == b"PK"
    assert "usage-ml.xlsx" in xlsx.headers["content-disposition"]
    bad = http.get("/v1/admin/teams/ml/export?format=pdf")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "format"
    assert http.get("/ui/teams/ml/statement?month=2026-13").status_code == 400


def test_tenant_chosen_names_are_escaped_on_the_team_pages(gw: RunningGateway) -> None:
    made(call(gw, "POST", "/v1/admin/orgs", json={"id": "acme", "name": XSS}))
    team = {"id": "ml", "org": "acme", "tier": "free", "name": XSS, "members": [XSS, "ann"]}
    made(call(gw, "POST", "/v1/admin/teams", json=team))
    token = made(call(gw, "POST", "/v1/admin/teams/ml/tokens", json={"role": "team_admin"}))
    made(call(gw, "POST", "/v1/admin/teams/ml/keys", token["token"], json={"user": XSS}))
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        assert sign_in(http, token["token"]).status_code == 303
        for suffix in TEAM_PAGES:
            page = http.get("/ui/teams/ml" + suffix)
            assert page.status_code == 200, (suffix, page.text)
            assert XSS not in page.text and "&lt;img src=x onerror=" in page.text, suffix


def test_an_operator_signs_in_as_before(gw: RunningGateway) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        signed = sign_in(http, ADMIN)
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/overview"
