"""The analytics, records and export endpoints: roles, validation, and exactly the filtered rows."""

from __future__ import annotations

import csv
import io
import time

import httpx

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import StartGateway
from tests.ui.signin import sign_in

ADMIN = "analytics-admin-token-0123456789"


def test_analytics_endpoints(start_gateway: StartGateway) -> None:
    gw = start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for model in ("ok", "ok", "ok-b"):
            answer = http.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {gw.key()}"},
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.status_code == 200
        assert http.get("/v1/admin/analytics").status_code == 401
        client = {"authorization": f"Bearer {gw.key()}"}
        assert http.get("/v1/admin/analytics", headers=client).status_code == 401
        bad = http.get("/v1/admin/analytics?group_by=colour", headers=admin)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
        assert http.get("/v1/admin/analytics?start=yesterday", headers=admin).status_code == 400
        by_model: dict[str, int] = {}
        deadline = time.monotonic() + 10  # the last answer's record is written just after it
        while by_model != {"ok": 2, "ok-b": 1} and time.monotonic() < deadline:
            url = "/v1/admin/analytics?group_by=model&bucket=all"
            by_model = {
                r["model"]: r["requests"] for r in http.get(url, headers=admin).json()["data"]
            }
        assert by_model == {"ok": 2, "ok-b": 1}
        page = http.get("/v1/admin/usage/records?limit=2&model=ok", headers=admin).json()
        assert len(page["data"]) == 2 and page["next_cursor"]
        rest = http.get(
            f"/v1/admin/usage/records?limit=2&model=ok&cursor={page['next_cursor']}",
            headers=admin,
        ).json()
        assert rest["data"] == [] and rest["next_cursor"] is None
        exported = http.get("/v1/admin/usage/export?format=csv&model=ok-b", headers=admin)
        assert exported.headers["content-type"].startswith("text/csv")
        assert [r["model"] for r in csv.DictReader(io.StringIO(exported.text))] == ["ok-b"]
        assert len(http.get("/v1/admin/usage/export?format=json", headers=admin).json()) == 3
        xlsx = http.get("/v1/admin/usage/export?format=xlsx", headers=admin)
        assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
        assert http.get("/v1/admin/usage/export?format=pdf", headers=admin).status_code == 400


def test_sessions_without_a_browser(start_gateway: StartGateway) -> None:
    gw = start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        assert http.get("/ui/overview").headers["location"] == "/ui/login"
        refused = sign_in(http, "sk-wrong")
        assert refused.status_code == 401 and "gw_session" not in refused.cookies
        signed = sign_in(http, ADMIN)
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/overview"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = http.get("/ui/flags")
        assert (
            page.status_code == 200
            and "default-src 'self'" in page.headers["content-security-policy"]
        )
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        flag = "/v1/admin/flags/together_ai_fallback"
        assert http.put(flag, json={"enabled": False}).status_code == 403  # no CSRF token
        changed = http.put(flag, json={"enabled": False}, headers={"x-csrf-token": csrf})
        assert changed.status_code == 200 and changed.json()["enabled"] is False
        assert http.post("/ui/logout", data={"csrf": csrf}).status_code == 303
        http.cookies.clear()
        http.cookies.set("gw_session", signed.cookies["gw_session"])
        assert http.get(flag).status_code == 401  # the session is gone everywhere

        user = sign_in(http, gw.key())
        assert user.headers["location"] == "/ui/me"
        assert http.get("/v1/quota").status_code == 200  # the user's own, by cookie
        assert http.get("/v1/admin/flags").status_code == 403  # a user is no operator
        assert http.get("/ui/overview").headers["location"] == "/ui/me"


def test_bad_time_bounds_and_cursors_are_refused_on_every_reader(
    start_gateway: StartGateway,
) -> None:
    """The fuzzer's finds on the admin API also held for the dashboard's analytics page (a
    500 for a cursor that is no record id) and a client's ``/v1/usage`` (a 500 for
    ``to=9999-12-31``, whose next midnight overflows)."""
    gw = start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        client = {"authorization": f"Bearer {gw.key()}"}
        for query in ("to=9999-12-31", "from=nan", "to=inf", "from=1e300"):
            answer = http.get(f"/v1/usage?{query}", headers=client)
            assert answer.status_code == 400, (query, answer.text)
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
        assert sign_in(http, ADMIN).status_code == 303
        for query in ("cursor=not-an-id", "start=nan", "end=9999-12-31", "start=0&bucket=hour"):
            page = http.get(f"/ui/analytics?{query}")
            assert page.status_code == 200, (query, page.text[:300])
        assert "next_cursor from a previous page" in http.get("/ui/analytics?cursor=x").text
