"""CSV/JSON export and the ``from``/``to`` parsing; pricing; store URL parsing."""

from __future__ import annotations

import orjson
import pytest

from gateway.config.model import Config, Price
from gateway.metering.pricing import cost_micros
from gateway.store.factory import parse_redis_url
from gateway.usage.export import export_records, parse_range, parse_time, to_csv, to_json
from tests.metering.helpers import NOON, Clock, metered, ok, request, run

RECORD = {
    "time": "2026-11-22T12:00:00.000Z",
    "ts": NOON,
    "request_id": "r1",
    "user": "alice",
    "key_id": "k1",
    "tier": "free",
    "capability": "text_generation",
    "model": "llama-3.1-8b",
    "provider": "together",
    "upstream_model": None,
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "images": 0,
    "audio_ms": 0,
    "cost_usd": 3e-06,
    "fallback": False,
    "byok": True,
    "status": 200,
    "latency_ms": 12.5,
    "attempts": 1,
    "estimated": False,
    "usage_flagged": False,
}


def test_csv_has_a_header_and_plain_cells() -> None:
    header, row, end = to_csv([RECORD]).split("\n")
    assert header.startswith("time,ts,request_id,user,key_id,tier,capability,model,provider")
    assert row == (
        "2026-11-22T12:00:00.000Z,1795348800.0,r1,alice,k1,free,text_generation,llama-3.1-8b,"
        "together,,10,5,15,0,0,3e-06,false,true,200,12.5,1,false,false,,,,,,,,"  # no video_ms
    )
    assert end == ""


def test_columns_added_later_come_last() -> None:
    record = {**RECORD, "video_ms": 8000, "cache": "hit", "tags": ["a", "b"]}
    record |= {"list_cost_usd": 3e-06, "charged_usd": 0.0, "org": "acme", "team": "ml"}
    header, row, _ = to_csv([record]).split("\n")
    assert header.endswith(
        ",usage_flagged,video_ms,cache,tags,record_id,list_cost_usd,charged_usd,org,team"
    )
    assert row.endswith(',false,false,8000,hit,"a,b",,3e-06,0.0,acme,ml')


def test_json_is_an_array_of_records() -> None:
    assert orjson.loads(to_json([RECORD])) == [RECORD]
    assert to_json([]) == b"[]"


@pytest.mark.parametrize(
    ("value", "end", "expected"),
    [
        ("1795348800", False, NOON),
        ("1795348800.5", False, NOON + 0.5),
        ("2026-11-22", False, NOON - 43200),
        ("2026-11-22", True, NOON + 43200),
        ("2026-11-22T12:00:00Z", False, NOON),
        ("2026-11-22T14:00:00+02:00", False, NOON),
        ("2026-11-22T12:00:00", True, NOON),
    ],
)
def test_parse_time(value: str, end: bool, expected: float) -> None:
    assert parse_time(value, end=end) == expected


def test_parse_range_defaults_and_errors() -> None:
    assert parse_range(None, None, NOON) == (NOON - 43200, NOON)
    assert parse_range("2026-11-01", "2026-11-22", NOON) == (
        NOON - 43200 - 21 * 86400,
        NOON + 43200,
    )
    with pytest.raises(ValueError, match="invalid time 'yesterday'"):
        parse_range("yesterday", None, NOON)
    with pytest.raises(ValueError, match="before"):
        parse_range("2026-11-22", "2026-11-01", NOON)


def test_cost_in_micro_usd() -> None:
    price = Price(input=0.18, output=0.6, per_image=0.04, per_minute=0.006)
    assert cost_micros(price, prompt_tokens=1000, completion_tokens=1000) == 780
    assert cost_micros(price, prompt_tokens=1) == 1  # 0.18 rounds up
    assert cost_micros(price, images=2) == 80_000
    assert cost_micros(price, audio_ms=90_000) == 9_000
    assert cost_micros(None, prompt_tokens=10) == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/0", ("redis://h:6379/0", False)),
        ("redis+cluster://h:7000", ("redis://h:7000", True)),
        ("rediss+cluster://u:p@h:7000", ("rediss://u:p@h:7000", True)),
        ("redis://h:7000?cluster=1&max_connections=9", ("redis://h:7000?max_connections=9", True)),
        ("redis://h:7000?cluster=false", ("redis://h:7000", False)),
    ],
)
def test_cluster_urls(url: str, expected: tuple[str, bool]) -> None:
    assert parse_redis_url(url) == expected


def test_export_records_reads_the_store(config: Config, redis_url: str) -> None:
    async def scenario() -> tuple[str, str]:
        clock = Clock()
        async with metered(config, redis_url, clock=clock) as (meter, _):
            for user in ("alice", "bob"):
                meter.finish(await meter.admit(request(config, user=user)), ok())
                clock.advance(86400)
        day = "2026-11-22"
        csv_text = await export_records(config, redis_url, None, day, day, "csv")
        json_text = await export_records(
            config, redis_url, "bob", "2026-11-22", "2026-11-24", "json"
        )
        return csv_text, json_text

    csv_text, json_text = run(scenario())
    assert len(csv_text.splitlines()) == 2 and ",alice," in csv_text
    assert [r["user"] for r in orjson.loads(json_text)] == ["bob"]
