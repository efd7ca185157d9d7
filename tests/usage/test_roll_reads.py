"""The roller's reads and writes: stream pages between two ids, documents by the chunk, and a
run over many pages and combinations summing what folding the records at once would."""

from __future__ import annotations

import asyncio

import orjson

from gateway.config.model import Config
from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import encode
from gateway.store.factory import create_store
from gateway.store.port import SettleBatch, Store
from gateway.usage.rollup import FIELD, PAGE, Document, Roller, fold, merge, read_documents

DAY = 1_795_305_600.0  # 2026-11-22T00:00:00Z


def record(n: int) -> UsageRecord:
    return UsageRecord(
        ts=DAY + 3000 + n, record_id=f"r{n}", request_id=f"q{n}", user=f"user{n % 40}",
        key_id=f"key{n % 40}", tier="free", capability="chat", model=f"model{n % 3}",
        provider="p", prompt_tokens=n % 7, completion_tokens=10, cost_usd=0.000025,
        charged_usd=0.00002 * (n % 2), latency_ms=100.0 + n % 50, status=200 + 229 * (n % 5 == 0),
    )  # fmt: skip


async def settle(store: Store, first: int, count: int) -> list[UsageRecord]:
    records = [record(n) for n in range(first, first + count)]
    await store.settle([SettleBatch((), encode(r)) for r in records])
    return records


def test_records_after_pages_oldest_first_between_the_bounds(
    config: Config, store_url: str | None
) -> None:
    asyncio.run(_records_after(config, store_url))


async def _records_after(config: Config, store_url: str | None) -> None:
    store = create_store(store_url, config.settings)
    try:
        records = [encode(r) for r in await settle(store, 0, 7)]
        ids = [entry for entry, _ in reversed(await store.records_page(None, 100))]
        assert len(ids) == 7
        assert await store.records_after(None, ids[4], 3) == (records[:3], ids[2])
        assert await store.records_after(ids[2], ids[4], 3) == (records[3:5], ids[4])
        assert await store.records_after(ids[4], ids[4], 3) == ([], "")
        assert await store.records_after(None, ids[6], 100) == (records, ids[6])
        assert await store.records_after(ids[0], ids[6], 2) == (records[1:3], ids[2])
    finally:
        await store.aclose()


def test_documents_are_read_and_written_by_the_chunk(config: Config, store_url: str | None) -> None:
    asyncio.run(_documents(config, store_url))


async def _documents(config: Config, store_url: str | None) -> None:
    store = create_store(store_url, config.settings)
    try:
        names = [f"gw:roll:test:{n}" for n in range(5)]  # spread over a cluster's slots
        await store.put_documents(FIELD, [(name, name.encode(), 60) for name in names[:4]])
        await store.put_documents(FIELD, [])
        assert await store.get_documents([], FIELD) == []
        found = await store.get_documents([names[4], *names[:4]], FIELD)
        assert found == [None, *(name.encode() for name in names[:4])]
        assert await store.get_document(names[1], FIELD) == names[1].encode()
        assert await store.get_documents(names[:1], "other") == [None]
        assert await read_documents(store, names) == [*found[1:], None]
        client = getattr(store, "client", None)
        if client is not None:  # Redis: every document expires
            assert all([0 < await client.ttl(name) <= 60 for name in names[:4]])
    finally:
        await store.aclose()


def test_runs_over_many_pages_and_combinations_sum_what_one_fold_would(
    config: Config, store_url: str | None
) -> None:
    asyncio.run(_runs(config, store_url))


async def _runs(config: Config, store_url: str | None) -> None:
    store = create_store(store_url, config.settings)
    roller = Roller(store, lambda: DAY + 7200)
    try:
        first = await settle(store, 0, 3 * PAGE + 7)  # pages of 40 users and 3 models each
        assert await roller.run_once() == len(first)
        assert await roller.run_once() == 0
        second = await settle(store, len(first), PAGE + 1)
        assert await roller.run_once() == len(second)  # merged into the stored documents
        expected: dict[str, Document] = {}
        fold([*first, *second], expected)
        stored = await read_documents(store, list(expected))
        assert [orjson.loads(raw) if raw else None for raw in stored] == [
            orjson.loads(orjson.dumps(document)) for document in expected.values()
        ]
    finally:
        await store.aclose()


def test_a_run_pads_and_adds_to_entries_folded_by_an_older_version(
    config: Config, store_url: str | None
) -> None:
    asyncio.run(_old_entries(config, store_url))


async def _old_entries(config: Config, store_url: str | None) -> None:
    store = create_store(store_url, config.settings)
    try:
        records = await settle(store, 0, 6)
        folded: dict[str, Document] = {}
        fold(records, folded)
        key = "gw:roll:full:d:20261122"
        old = {combo: entry[:7] for combo, entry in folded[key].items()}  # no charged/BYOK sums
        old["elsewhere"] = [1, 0, 0, 2, 3, 4, {"5": 1}]
        await store.put_document(key, FIELD, orjson.dumps(old), 3600)
        assert await Roller(store, lambda: DAY + 7200).run_once() == len(records)
        expected = orjson.loads(orjson.dumps(old))
        merge(expected, folded[key])
        [raw] = await read_documents(store, [key])
        assert raw is not None and orjson.loads(raw) == expected
        assert orjson.loads(raw)["elsewhere"] == [1, 0, 0, 2, 3, 4, {"5": 1}]  # untouched
    finally:
        await store.aclose()
