"""The dashboard in headless Chromium against `gateway serve` on a real redis-server."""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from typing import Any
from xml.etree import ElementTree

import httpx
import openai
import pytest

from tests.scale.gateways import Gateway
from tests.ui.conftest import ADMIN, USER, USER_KEY, Browser

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("chromedriver"), reason="chromium-driver is not installed"
)
OPERATOR_PAGES = ("overview", "analytics", "keys", "users", "orgs", "flags", "quotas", "providers",
                  "requests", "audit")  # fmt: skip


def admin_api(served: Gateway, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, served.url + path, headers=headers, timeout=10, **kw)


def chat(served: Gateway, key: str, count: int = 1) -> None:
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)
    for _ in range(count):
        answer = client.chat.completions.create(
            model="ok", messages=[{"role": "user", "content": "hello"}], max_tokens=5
        )
        assert answer.choices[0].message.content


def billed(served: Gateway, user: str, count: int = 1, timeout: float = 10) -> None:
    """Wait until ``count`` usage records of the user are stored: billing runs after the
    answer's last byte, so a page read right after the call could come before it."""
    deadline = time.monotonic() + timeout
    path = f"/v1/admin/usage/records?user={user}&limit={count}"
    while len(admin_api(served, "GET", path).json()["data"]) < count:
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


def xlsx_rows(data: bytes) -> list[list[str]]:
    """The first sheet's cells as text (shared or inline strings, numbers as written)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        shared = []
        if "xl/sharedStrings.xml" in book.namelist():
            root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")) for si in root]
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = []
        for c in row.iter(f"{{{ns['m']}}}c"):
            value = c.find("m:v", ns)
            text = value.text if value is not None else ""
            if c.get("t") == "s":
                text = shared[int(text or 0)]
            elif c.get("t") == "inlineStr":
                text = "".join(t.text or "" for t in c.iter(f"{{{ns['m']}}}t"))
            cells.append(text or "")
        rows.append(cells)
    return rows


def test_operator_pages(browser: Browser, served: Gateway) -> None:
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(ADMIN)
    assert browser.driver.current_url.endswith("/ui/overview")

    # create a key; its secret is shown once
    browser.visit("/ui/keys", "keys", ready="body[data-ready]")
    form = browser.driver.find_element("id", "create-key")
    form.find_element("name", "user").send_keys("ui-user")
    form.find_element("name", "name").send_keys("from the browser")
    form.find_element("name", "rpm").send_keys("100")
    browser.driver.find_element("id", "create-key-submit").click()
    browser.wait(lambda: browser.driver.find_element("id", "new-secret").text.startswith("sk-"))
    secret = browser.driver.find_element("id", "new-secret").text
    browser.wait(lambda: "ui-user" in browser.driver.find_element("id", "keys").text)
    browser.driver.find_element("id", "copy-secret").click()
    browser.check("keys-created")

    # use it through the openai SDK, then find the request in analytics and on the overview
    chat(served, secret)
    billed(served, "ui-user")
    browser.visit("/ui/analytics?user=ui-user", "analytics", ready="#records")
    records = browser.driver.find_element("id", "records").text
    assert "ui-user" in records and "ok" in records
    assert browser.driver.find_element("css selector", "[data-stat=requests]").text == "1"
    browser.visit("/ui/overview", "overview", ready="#chart")
    assert int(browser.driver.find_element("css selector", "[data-stat=requests]").text) >= 1
    assert "ok" in browser.driver.find_element("id", "by-model").text

    # the exports hold exactly what is filtered
    browser.visit("/ui/analytics?user=ui-user", "analytics-filtered", ready="#export-csv")
    csv_href = browser.driver.find_element("id", "export-csv").get_attribute("href")
    status, text = browser.fetch(csv_href)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["user"], r["model"], r["status"]) for r in rows] == [("ui-user", "ok", "200")]
    xlsx_href = browser.driver.find_element("id", "export-xlsx").get_attribute("href")
    status, data = browser.fetch(xlsx_href, binary=True)
    assert status == 200
    sheet = xlsx_rows(bytes(data))
    assert sheet[0][:5] == ["time", "ts", "request_id", "user", "key_id"]
    assert len(sheet) == 2 and sheet[1][3] == "ui-user"

    # flip a flag
    browser.visit("/ui/flags", "flags", ready="#flag-dashboard_demo")
    browser.driver.find_element("id", "flag-dashboard_demo").click()
    rollout = browser.driver.find_element("id", "rollout-dashboard_demo")
    rollout.clear()
    rollout.send_keys("50")
    row = browser.driver.find_element("id", "flag-dashboard_demo").find_element("xpath", "../..")
    row.find_element("tag name", "button").click()
    browser.wait(lambda: "saved" in browser.driver.find_element("id", "notice").text)
    flag = admin_api(served, "GET", "/v1/admin/flags/dashboard_demo").json()
    assert flag["enabled"] is True and flag["rollout_percent"] == 50

    # edit a quota
    browser.visit("/ui/quotas", "quotas", ready="#save-free-text_generation")
    field = browser.driver.find_element("id", "requests_per_day-free-text_generation")
    assert field.get_attribute("value") == "50"
    field.clear()
    field.send_keys("40")
    browser.driver.find_element("id", "save-free-text_generation").click()
    browser.wait(lambda: "saved" in browser.driver.find_element("id", "notice").text)
    quota = admin_api(served, "GET", "/v1/admin/tiers/free/quotas/text_generation").json()
    assert quota["quota"]["requests_per_day"] == 40 and quota["source"] == "runtime"

    # revoke the key from its row: the old secret stops working
    browser.visit("/ui/keys", "keys-before-revoke", ready="body[data-ready]")
    row = browser.driver.find_element("xpath", "//table[@id='keys']//tr[td[2]='ui-user']")
    row.find_element("xpath", ".//button[text()='Revoke']").click()
    browser.wait(lambda: "revoked" in browser.driver.find_element("id", "notice").text)
    with pytest.raises(openai.AuthenticationError):
        chat(served, secret)

    # every page renders without console errors, at 1280 px and on a 390 px phone
    for width, height in ((1280, 800), (390, 844)):
        browser.driver.set_window_size(width, height)
        for name in OPERATOR_PAGES:
            browser.visit(f"/ui/{name}", name, ready="body[data-ready]")
    browser.driver.set_window_size(1280, 800)
    browser.visit("/ui/audit", "audit", ready="body[data-ready]")
    assert "flag" in browser.driver.find_element("id", "audit").text
    browser.sign_out()


def test_viewer_sees_but_cannot_change(browser: Browser, served: Gateway) -> None:
    made = admin_api(served, "POST", "/v1/admin/tokens", json={"role": "viewer", "name": "ui"})
    assert made.status_code == 201, made.text
    browser.sign_in(made.json()["token"])
    browser.visit("/ui/flags", "flags-viewer", ready="#flag-dashboard_demo")
    assert not browser.driver.find_element("id", "flag-dashboard_demo").is_enabled()
    script = (
        "const done = arguments[0];"
        "fetch('/v1/admin/flags/dashboard_demo', {method: 'PUT', credentials: 'same-origin',"
        " headers: {'content-type': 'application/json', 'x-csrf-token':"
        " document.querySelector('meta[name=csrf-token]').content},"
        " body: JSON.stringify({enabled: false})}).then(r => done(r.status));"
    )
    assert browser.driver.execute_async_script(script) == 403
    browser.driver.get_log("browser")  # the 403 above is expected
    browser.sign_out()


def test_csrf_and_session_rules(browser: Browser, served: Gateway) -> None:
    browser.sign_in(ADMIN)
    script = (
        "const done = arguments[0];"
        "fetch('/v1/admin/flags/dashboard_demo', {method: 'PUT', credentials: 'same-origin',"
        " headers: {'content-type': 'application/json'}, body: JSON.stringify({enabled: false})})"
        ".then(r => done(r.status));"
    )
    assert browser.driver.execute_async_script(script) == 403  # no CSRF token
    browser.driver.get_log("browser")
    cookie = browser.driver.get_cookie("gw_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    browser.sign_out()
    # the session is gone from the store: the old cookie no longer works
    answer = httpx.get(
        served.url + "/v1/admin/flags", cookies={"gw_session": cookie["value"]}, timeout=10
    )
    assert answer.status_code == 401


def test_user_pages_and_quota_request(browser: Browser, served: Gateway) -> None:
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(USER_KEY)
    assert browser.driver.current_url.endswith("/ui/me")
    bar = '[data-capability=text_generation][data-measure="requests"]'
    browser.visit("/ui/me", "me", ready=bar)
    before = int(browser.driver.find_element("css selector", bar).get_attribute("data-used"))
    chat(served, USER_KEY, 2)
    billed(served, USER, 2)
    browser.visit("/ui/me", "me-after", ready=bar)
    after = int(browser.driver.find_element("css selector", bar).get_attribute("data-used"))
    assert after == before + 2
    assert browser.driver.find_element("id", "my-requests").text == str(2)

    form = browser.driver.find_element("id", "quota-request")
    form.find_element("name", "requests_per_day").send_keys("500")
    browser.driver.find_element("id", "quota-request-submit").click()
    browser.wait(lambda: "sent" in browser.driver.find_element("id", "notice").text)
    request_id = re.search(r"Request (\S+) sent", browser.driver.find_element("id", "notice").text)
    assert request_id is not None
    browser.driver.set_window_size(390, 844)
    browser.visit("/ui/me", "me-phone", ready=bar)
    browser.driver.set_window_size(1280, 800)
    browser.sign_out()

    browser.sign_in(ADMIN)
    browser.visit("/ui/requests", "requests", ready=f"#approve-{request_id.group(1)}")
    browser.driver.find_element("id", f"approve-{request_id.group(1)}").click()
    browser.wait(lambda: "approved" in browser.driver.find_element("id", "notice").text)
    override = admin_api(served, "GET", f"/v1/admin/users/{USER}").json()
    assert override["quotas"]["text_generation"]["requests_per_day"] == 500
    browser.sign_out()
