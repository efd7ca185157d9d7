"""Monthly statements through the real API: an in-process gateway, a real redis-server, the
mock upstream. The statement of a user with BYOK use is checked to the cent."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.etree import ElementTree

import httpx
import openai
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.first_run.process import ROOT
from tests.support import DEFAULT_ROUTES, routes_doc
from tests.ui.signin import sign_in

ADMIN = "admin-token-for-statements-1"
MONTH = "2027-01"  # the clock: 1_800_000_000 is 2027-01-15T08:00:00Z
MESSAGES = [{"role": "user", "content": "hello there, how are you today"}]
PRICEY = {"input": 1000.0, "output": 2000.0}  # USD per 1M tokens: cents per request
TIERS = {
    "paid": {
        "routes": {**DEFAULT_ROUTES, "text": ["pricey"]},
        "monthly_fee_usd": 9.99,
        "byok_discount_percent": 10,
    },
    "free": {"routes": {**DEFAULT_ROUTES, "text": ["pricey"]}},
}
CENT = Decimal("0.01")
SPAN = {"from": "2027-01-01", "to": "2027-01-31"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def pricey_models(upstream: Any) -> dict[str, Any]:
    models = dict(routes_doc(upstream.base_url)["models"])
    models["pricey"] = {**models["ok"], "price": PRICEY}
    return models


@pytest.fixture
def gw(start_gateway: Any, redis: Any, upstream: Any) -> Any:
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    extra = {"models": pricey_models(upstream)}
    return start_gateway(TIERS, runtime=runtime, clock=Clock(), routes_extra=extra)


def chat(gw: Any, tier: str, **headers: str) -> None:
    with openai.OpenAI(
        base_url=gw.base_url, api_key=gw.key(tier), max_retries=0, default_headers=headers
    ) as sdk:
        sdk.chat.completions.create(model="text", messages=MESSAGES, max_tokens=20)


def get(gw: Any, path: str, token: str, **params: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.get(gw.url + path, headers=headers, params=params, timeout=10)


def records(gw: Any, tier: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found: list[dict[str, Any]] = get(gw, "/v1/usage", gw.key(tier), **SPAN).json()["data"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def cents(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def test_a_month_with_byok_use_is_billed_to_the_cent(gw: Any) -> None:
    chat(gw, "paid")
    chat(gw, "paid")
    chat(gw, "paid", **{"x-upstream-api-key": "sk-own-together-key-123"})
    chat(gw, "free")
    mine = records(gw, "paid", 3)
    assert sorted(r["byok"] for r in mine) == [False, False, True]
    charged = [Decimal(repr(r["charged_usd"])) for r in mine if not r["byok"]]
    assert all(c > 0 for c in charged)
    byok = next(r for r in mine if r["byok"])
    assert byok["charged_usd"] == 0.0 and byok["list_cost_usd"] > 0

    answer = get(gw, f"/v1/me/statements/{MONTH}", gw.key("paid"))
    assert answer.status_code == 200, answer.text
    statement = answer.json()
    usage = sum(charged, Decimal(0))
    fee = Decimal("9.99")
    discount = (fee + usage) * Decimal("0.10")
    assert statement["user"] == "user-paid" and statement["tier"] == "paid"
    assert statement["monthly_fee_usd"] == "9.99"
    assert Decimal(statement["exact"]["usage_usd"]) == usage
    assert statement["usage_usd"] == cents(usage)
    assert statement["byok"] == {
        "used": True,
        "requests": 1,
        "tokens": byok["total_tokens"],
        "charged_usd": "0.00",
    }
    assert statement["byok_discount_percent"] == "10"
    assert Decimal(statement["exact"]["byok_discount_usd"]) == discount
    assert statement["byok_discount_usd"] == cents(discount)
    assert statement["total_usd"] == cents(fee + usage - discount)
    [line] = statement["usage"]
    assert (line["capability"], line["model"]) == ("text_generation", "pricey")
    assert (line["requests"], line["byok_requests"]) == (2, 1)
    assert Decimal(line["charged_usd"]) == usage
    assert statement["exact"] == {
        "usage_usd": "0.034000",
        "subtotal_usd": "10.024000",
        "byok_discount_usd": "1.002400",
        "total_usd": "9.021600",
    }
    # pinned: the mock's token counts are fixed, so is the bill
    assert (statement["usage_usd"], statement["byok_discount_usd"], statement["total_usd"]) == (
        PINNED_USAGE,
        PINNED_DISCOUNT,
        PINNED_TOTAL,
    )

    free = get(gw, f"/v1/me/statements/{MONTH}", gw.key("free")).json()
    assert free["user"] == "user-free" and free["byok"]["used"] is False
    assert free["byok_discount_usd"] == "0.00" and free["monthly_fee_usd"] == "0.00"

    every = get(gw, "/v1/admin/statements", ADMIN, month=MONTH, limit="1")
    assert every.status_code == 200, every.text
    page = every.json()
    assert [s["user"] for s in page["data"]] == ["user-free"] and page["has_more"] is True
    rest = get(gw, "/v1/admin/statements", ADMIN, month=MONTH, cursor=page["next_cursor"]).json()
    assert [s["user"] for s in rest["data"]] == ["user-paid"] and rest["has_more"] is False
    assert rest["data"][0]["total_usd"] == statement["total_usd"]

    empty = get(gw, "/v1/me/statements/2026-12", gw.key("paid")).json()
    assert empty["usage"] == [] and empty["total_usd"] == "0.00" and empty["tier"] == "paid"


def test_another_users_statement_is_not_readable(gw: Any) -> None:
    chat(gw, "paid")
    records(gw, "paid", 1)
    other = get(gw, f"/v1/me/statements/{MONTH}", gw.key("free"), user="user-paid")
    assert other.status_code == 403
    assert set(other.json()["error"]) == {"message", "type", "param", "code"}
    listing = get(gw, "/v1/admin/statements", gw.key("free"), month=MONTH)
    assert listing.status_code in (401, 403)
    assert "user-paid" not in listing.text
    own = get(gw, f"/v1/me/statements/{MONTH}", gw.key("free")).json()
    assert own["user"] == "user-free" and own["usage"] == []


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        (f"/v1/me/statements/{MONTH[:4]}-13", {}, "month"),
        ("/v1/me/statements/january", {}, "month"),
        (f"/v1/me/statements/{MONTH}", {"format": "pdf"}, "format"),
    ],
)
def test_bad_statement_queries_are_400s(
    gw: Any, path: str, params: dict[str, str], param: str
) -> None:
    answer = get(gw, path, gw.key("paid"), **params)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


def test_admin_statements_need_a_month(gw: Any) -> None:
    answer = get(gw, "/v1/admin/statements", ADMIN)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "month"


def xlsx_cells(body: bytes) -> list[tuple[str, str | None, str]]:
    """(cell type, formula, value) of every cell of every sheet of a workbook."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(body)) as book:
        names = [n for n in book.namelist() if n.startswith("xl/worksheets/sheet")]
        shared = []
        if "xl/sharedStrings.xml" in book.namelist():
            root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")) for si in root]
        cells = []
        for name in names:
            for c in ElementTree.fromstring(book.read(name)).iter(f"{{{ns['m']}}}c"):
                formula = c.find("m:f", ns)
                value = c.find("m:v", ns)
                text = value.text if value is not None and value.text else ""
                kind = c.get("t", "n")
                if kind == "s":
                    text = shared[int(text)]
                inline = c.find("m:is/m:t", ns)
                if inline is not None:
                    text = inline.text or ""
                cells.append((kind, None if formula is None else formula.text, text))
    return cells


def test_downloads_csv_xlsx_and_strings_stay_strings(gw: Any) -> None:
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key("paid"), max_retries=0) as sdk:
        sdk.chat.completions.create(
            model="text",
            messages=MESSAGES,
            max_tokens=5,
            extra_headers={"x-gateway-tags": "=1-1"},
        )
    chat(gw, "free")  # another user's record: never in the paid user's own export
    records(gw, "paid", 1)
    records(gw, "free", 1)
    csv_text = get(gw, f"/v1/me/statements/{MONTH}", gw.key("paid"), format="csv")
    assert csv_text.status_code == 200 and csv_text.headers["content-type"].startswith("text/csv")
    header, row = csv_text.text.splitlines()[:2]
    assert header.startswith("user,month,tier,monthly_fee_usd")
    assert row.startswith(f"user-paid,{MONTH},paid,9.99,")

    for body in (
        get(gw, f"/v1/me/statements/{MONTH}", gw.key("paid"), format="xlsx").content,
        get(gw, "/v1/admin/statements", ADMIN, month=MONTH, format="xlsx").content,
    ):
        cells = xlsx_cells(body)
        assert all(formula is None for _, formula, _ in cells)
        assert ("s", None, "user-paid") in cells or ("inlineStr", None, "user-paid") in cells

    usage = get(gw, "/v1/usage", gw.key("paid"), format="xlsx", **SPAN)
    assert usage.status_code == 200, usage.text
    cells = xlsx_cells(usage.content)
    assert all(formula is None for _, formula, _ in cells)
    texts = [value for kind, _, value in cells if kind in ("s", "inlineStr", "str")]
    assert "=1-1" in texts and "charged_usd" in texts and "list_cost_usd" in texts
    assert "user-paid" in texts and "user-free" not in texts
    admin_export = get(
        gw, "/v1/admin/usage/export", ADMIN, format="xlsx", start="0", end="2027-02-01"
    )
    assert all(formula is None for _, formula, _ in xlsx_cells(admin_export.content))
    assert "=1-1" in [value for _, _, value in xlsx_cells(admin_export.content)]


PINNED_USAGE = "0.03"
PINNED_DISCOUNT = "1.00"
PINNED_TOTAL = "9.02"


def test_dashboard_statement_pages(gw: Any) -> None:
    chat(gw, "paid")
    chat(gw, "paid", **{"x-upstream-api-key": "sk-own-together-key-123"})
    records(gw, "paid", 2)
    with httpx.Client(base_url=gw.url, timeout=10) as user:
        assert sign_in(user, gw.key("paid")).status_code == 303
        mine = user.get("/ui/me/statement", params={"month": MONTH})
        assert mine.status_code == 200, mine.text
        expected = get(gw, f"/v1/me/statements/{MONTH}", gw.key("paid")).json()
        assert f'<td id="total"><b>${float(expected["total_usd"]):.4f}</b></td>' in mine.text
        assert '<td id="fee">$9.9900</td>' in mine.text
        assert "1 requests" in mine.text and "pricey" in mine.text
        csv_body = user.get(f"/v1/me/statements/{MONTH}", params={"format": "csv"})
        assert csv_body.status_code == 200 and "user-paid" in csv_body.text
        assert 'id="my-statement"' in user.get("/ui/me").text
        assert user.get("/ui/me/statement", params={"month": "2027-13"}).status_code == 400
        assert user.get("/ui/statements", follow_redirects=False).status_code == 303
    with httpx.Client(base_url=gw.url, timeout=10) as operator:
        assert sign_in(operator, ADMIN).status_code == 303
        listing = operator.get("/ui/statements", params={"month": MONTH})
        assert listing.status_code == 200, listing.text
        assert "<td>user-paid</td>" in listing.text
        assert f"<td>${float(expected['total_usd']):.4f}</td>" in listing.text


def test_cli_usage_export_writes_xlsx(gw: Any, redis: Any, tmp_path: Any) -> None:
    chat(gw, "paid", **{"x-upstream-api-key": "sk-own-together-key-123"})
    chat(gw, "free")
    records(gw, "free", 1)
    records(gw, "paid", 1)
    argv = [sys.executable, "-m", "gateway", "--config-dir", str(ROOT), "usage", "export"]
    argv += ["--from", "2027-01-01", "--to", "2027-01-31", "--format", "xlsx"]
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "REDIS_URL": redis.url}
    written = tmp_path / "usage.xlsx"
    to_file = subprocess.run(
        [*argv, "--output", str(written)], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert to_file.returncode == 0, to_file.stderr
    piped = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    for body in (written.read_bytes(), piped.stdout):
        cells = xlsx_cells(body)
        texts = [value for kind, _, value in cells if kind in ("s", "inlineStr", "str")]
        assert {"charged_usd", "list_cost_usd", "user-paid", "user-free"} <= set(texts)
        assert all(formula is None for _, formula, _ in cells)
