"""XLSX workbooks for the exports: every text cell written as text.

xlsxwriter turns a string that starts with ``=`` into a formula, and (if asked) numeric-looking
strings into numbers and URL-looking strings into links; a user's model name, tag or request id
must never become a formula in an operator's spreadsheet, so all three are off.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import xlsxwriter

from gateway.metering.record import UsageRecord

OPTIONS = {
    "in_memory": True,
    "strings_to_formulas": False,
    "strings_to_numbers": False,
    "strings_to_urls": False,
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Sheet = tuple[str, Sequence[str], Iterable[Sequence[Any]]]  # name, header, rows


def workbook(sheets: Iterable[Sheet]) -> bytes:
    """One worksheet per ``(name, header, rows)``; numbers stay numbers, None an empty cell."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, OPTIONS)
    for name, header, rows in sheets:
        sheet = book.add_worksheet(name)
        for column, title in enumerate(header):
            sheet.write_string(0, column, title)
        for number, row in enumerate(rows, start=1):
            for column, value in enumerate(row):
                shown = cell(value)
                if isinstance(shown, str):
                    sheet.write_string(number, column, shown)
                else:
                    sheet.write_number(number, column, shown)
    book.close()
    return out.getvalue()


def cell(value: Any) -> str | int | float:
    """Text, or a finite number (NaN and infinity are written as text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal) and value.is_finite():
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def records_workbook(
    records: Iterable[UsageRecord | Mapping[str, Any]], columns: Sequence[str]
) -> bytes:
    """Usage records (or rows of their wire form), one row each, in ``columns`` (the CSV
    export's)."""
    rows = (wire(r) for r in records)
    return workbook([("usage", columns, ([r.get(c) for c in columns] for r in rows))])


def wire(record: UsageRecord | Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's wire form (a mapping, such as a row of per-tag totals, as it is)."""
    return record.as_dict() if isinstance(record, UsageRecord) else record
