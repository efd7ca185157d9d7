"""Page rendering: the Jinja2 environment (autoescaped) and the dashboard's response headers."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).parent / "templates"
# Every asset is served from /ui/static: no other origin is ever contacted.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _number
    env.filters["usd"] = _usd
    env.filters["datelabel"] = _date_label
    env.filters["pct"] = lambda value: f"{100 * float(value or 0):.1f}%"
    return env


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _usd(value: Any) -> str:
    """Money as every page shows it, four decimals: ``$1,234.5678`` (exact for decimals)."""
    return f"${Decimal(str(value or 0)):,.4f}"


def _date_label(value: Any) -> str:
    """A date input's value (``YYYY-MM-DD``) from epoch seconds or a date; else empty."""
    text = str(value or "")
    if text.replace(".", "", 1).isdecimal():
        return datetime.fromtimestamp(float(text), UTC).strftime("%Y-%m-%d")
    return text[:10] if len(text) >= 10 and text[4] == "-" else ""


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"
