"""Statements as CSV and XLSX: one summary row per statement, then one row per usage line.

Amounts in the summary are the rounded cents of ``Statement.as_json``; the lines keep the exact
metered amounts (micro-USD), so a spreadsheet can re-add them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.usage.export import neutralised
from gateway.usage.spreadsheet import workbook
from gateway.usage.statements import Statement, cents

SUMMARY = (
    "user",
    "month",
    "tier",
    "monthly_fee_usd",
    "usage_usd",
    "byok_requests",
    "byok_tokens",
    "subtotal_usd",
    "byok_discount_percent",
    "byok_discount_usd",
    "total_usd",
)
LINES = (
    "user",
    "capability",
    "model",
    "requests",
    "tokens",
    "byok_requests",
    "byok_tokens",
    "list_cost_usd",
    "charged_usd",
    "org",
    "team",
)


def summary_row(statement: Statement) -> list[Any]:
    return [
        statement.user,
        statement.month,
        statement.tier,
        cents(statement.fee_usd),
        cents(statement.usage_usd),
        statement.byok_requests,
        statement.byok_tokens,
        cents(statement.subtotal_usd),
        statement.discount_percent,
        cents(statement.discount_usd),
        cents(statement.total_usd),
    ]


def line_rows(statements: Iterable[Statement]) -> list[list[Any]]:
    return [
        [
            statement.user,
            line.capability,
            line.model,
            line.requests,
            line.tokens,
            line.byok_requests,
            line.byok_tokens,
            line.list_cost_usd,
            line.charged_usd,
            line.org,
            line.team,
        ]
        for statement in statements
        for line in statement.lines
    ]


def statements_csv(statements: Sequence[Statement]) -> str:
    """The summary table, a blank row, then the usage lines table."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY)
    writer.writerows([_text(v) for v in summary_row(s)] for s in statements)
    writer.writerow([])
    writer.writerow(LINES)
    writer.writerows([_text(v) for v in row] for row in line_rows(statements))
    return out.getvalue()


def statements_xlsx(statements: Sequence[Statement]) -> bytes:
    """Two sheets: ``statements`` (the summary rows) and ``usage`` (the lines)."""
    return workbook(
        [
            ("statements", SUMMARY, [summary_row(s) for s in statements]),
            ("usage", LINES, line_rows(statements)),
        ]
    )


def _text(value: Any) -> str:
    """A CSV cell: text a spreadsheet never runs as a formula (a user id starting with ``=``)."""
    return neutralised(value) if isinstance(value, str) else str(value)
