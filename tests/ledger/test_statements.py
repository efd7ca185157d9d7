"""Monthly statements read from the ledger (a real PostgreSQL): the same bill, to the cent, as
the records say; every user's statements paged by user id in SQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.e2e.test_statements import ADMIN, TIERS, chat, get, pricey_models


def test_a_statement_from_the_ledger_to_the_cent(
    start_gateway: Any,
    redis: Any,
    upstream: Any,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
    gw = start_gateway(TIERS, runtime=runtime, routes_extra={"models": pricey_models(upstream)})
    month = datetime.now(UTC).strftime("%Y-%m")
    chat(gw, "paid")
    chat(gw, "paid")
    chat(gw, "paid", **{"x-upstream-api-key": "sk-own-together-key-123"})
    chat(gw, "free")
    deadline = time.monotonic() + 30
    while True:
        body = get(gw, "/v1/usage", gw.key("paid"), **{"from": "2000-01-01"}).json()
        if (body["source"], len(body["data"])) == ("postgres", 3) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    mine = body["data"]
    assert body["source"] == "postgres" and len(mine) == 3
    # The free user's record may land in a later insert than the paid user's (the shipper
    # lingers between short batches), and the statements list only users the ledger holds.
    while time.monotonic() < deadline:
        listed = get(gw, "/v1/admin/statements", ADMIN, month=month).json()
        if [s["user"] for s in listed["data"]] == ["user-free", "user-paid"]:
            break
        time.sleep(0.1)
    usage = sum((Decimal(repr(r["charged_usd"])) for r in mine), Decimal(0))
    fee = Decimal("9.99")
    discount = (fee + usage) / 10
    cent = Decimal("0.01")

    statement = get(gw, f"/v1/me/statements/{month}", gw.key("paid")).json()
    assert statement["source"] == "postgres"
    assert Decimal(statement["exact"]["usage_usd"]) == usage
    assert Decimal(statement["exact"]["byok_discount_usd"]) == discount
    total = (fee + usage - discount).quantize(cent, rounding=ROUND_HALF_UP)
    assert statement["total_usd"] == str(total)
    assert statement["byok"]["requests"] == 1 and statement["byok"]["used"] is True
    [line] = statement["usage"]
    assert (line["requests"], line["byok_requests"]) == (2, 1)

    first = get(gw, "/v1/admin/statements", ADMIN, month=month, limit="1").json()
    assert [s["user"] for s in first["data"]] == ["user-free"] and first["has_more"] is True
    rest = get(gw, "/v1/admin/statements", ADMIN, month=month, cursor=first["next_cursor"])
    assert [s["user"] for s in rest.json()["data"]] == ["user-paid"]
    assert rest.json()["data"][0]["total_usd"] == str(total)
