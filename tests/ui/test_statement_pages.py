"""The statement pages in headless Chromium: a user's own month (BYOK use: a discount; Spend is
what was charged) and the operator's list, at desktop and phone widths."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import openai
import pytest

from tests.scale.gateways import Gateway
from tests.ui.conftest import ADMIN, USER, USER_KEY, Browser

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("chromedriver"), reason="chromium-driver is not installed"
)


def chat(served: Gateway, **headers: str) -> None:
    client = openai.OpenAI(
        base_url=served.url + "/v1", api_key=USER_KEY, max_retries=0, default_headers=headers
    )
    client.chat.completions.create(
        model="ok", messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )


def my_records(served: Gateway, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    while True:
        found = httpx.get(
            served.url + "/v1/usage",
            params={"from": today},
            headers={"authorization": f"Bearer {USER_KEY}"},
        ).json()["data"]
        if len(found) >= count or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.05)


def test_statement_pages_in_chromium(browser: Browser, served: Gateway) -> None:
    chat(served)
    chat(served, **{"x-upstream-api-key": "sk-own-key-for-the-ui-1"})
    records = my_records(served, 2)
    assert sorted(bool(r["byok"]) for r in records) == [False, True]
    charged = sum(Decimal(repr(r["charged_usd"])) for r in records)
    listed = sum(Decimal(repr(r["list_cost_usd"])) for r in records)
    assert listed > charged > 0
    month = datetime.now(UTC).strftime("%Y-%m")
    expected = httpx.get(
        f"{served.url}/v1/me/statements/{month}",
        headers={"authorization": f"Bearer {USER_KEY}"},
    ).json()
    assert expected["byok"]["used"] is True

    browser.driver.set_window_size(1280, 800)
    browser.sign_in(USER_KEY)
    browser.visit("/ui/me", "me-spend", ready="#my-statement")
    browser.wait(lambda: browser.driver.find_element("id", "my-requests").text == str(2))
    spend = browser.driver.find_element("id", "my-spend").text
    assert spend == f"${charged:.4f}"  # charged, not the list cost with BYOK included
    browser.driver.find_element("id", "my-statement").click()
    browser.wait(lambda: "/ui/me/statement" in browser.driver.current_url)
    browser.visit(f"/ui/me/statement?month={month}", "my-statement", ready="#total")
    # the statement's cents, shown with four decimals like every amount on the dashboard
    total = Decimal(str(expected["total_usd"]))
    assert browser.driver.find_element("id", "total").text == f"${total:,.4f}"
    discount = browser.driver.find_element("id", "discount").text
    assert discount == "\u2212" + f"${Decimal(str(expected['byok_discount_usd'])):,.4f}"
    downloads_hold(browser, USER, expected["total_usd"])
    browser.driver.set_window_size(390, 844)
    browser.visit(f"/ui/me/statement?month={month}", "my-statement-phone", ready="#total")
    browser.driver.set_window_size(1280, 800)
    browser.sign_out()

    browser.sign_in(ADMIN)
    browser.visit(f"/ui/statements?month={month}", "statements", ready="#statements")
    table = browser.driver.find_element("id", "statements").text
    assert USER in table and f"${total:,.4f}" in table
    downloads_hold(browser, USER, expected["total_usd"])
    browser.sign_out()


def downloads_hold(browser: Browser, user: str, total_usd: str) -> None:
    """Each of the page's CSV, JSON and XLSX links, fetched with the page's session: the
    user's row and the statement's total in each (a list of statements on the operator's)."""
    link = {
        kind: str(browser.driver.find_element("id", f"download-{kind}").get_attribute("href"))
        for kind in ("csv", "json", "xlsx")
    }
    status, csv_text = browser.fetch(link["csv"])
    assert status == 200, link["csv"]
    summary = csv_text.split("\n\n", 1)[0]  # the summary table, then the usage lines
    rows = list(csv.DictReader(io.StringIO(summary)))
    mine = [row for row in rows if row["user"] == user]
    assert len(mine) == 1 and mine[0]["total_usd"] == total_usd, rows
    status, json_text = browser.fetch(link["json"])
    assert status == 200, link["json"]
    document = json.loads(json_text)
    statements = document.get("data", [document])
    assert [s["total_usd"] for s in statements if s["user"] == user] == [total_usd]
    status, raw = browser.fetch(link["xlsx"], binary=True)
    assert status == 200, link["xlsx"]
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as book:
        text = "".join(
            book.read(name).decode()
            for name in book.namelist()
            if name.startswith("xl/worksheets/") or name == "xl/sharedStrings.xml"
        )
    assert user in text and "<f>" not in text
