"""Spend tags: x-gateway-tags and metadata.tags on the usage record, /v1/usage and the export
filtered and grouped by tag, and bad tags refused OpenAI-style."""

import asyncio
import time

import httpx
import openai
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from gateway.usage.export import by_tag, to_csv, with_tag

ADMIN = "admin-token-for-tag-tests-1"
MESSAGES = [{"role": "user", "content": "tag me"}]


@pytest.fixture
def gw(start_gateway):
    return start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))


@pytest.fixture
def client(gw):
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        yield client


def usage(gw, **params):
    answer = httpx.get(
        gw.base_url + "/usage", params=params, headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def settled(gw, count):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(usage(gw)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"expected {count} records")


def test_usage_is_filtered_and_grouped_by_tag(gw, client):
    tagged = {"x-gateway-tags": "team-a, feature:search"}
    client.chat.completions.create(model="text", messages=MESSAGES, extra_headers=tagged)
    client.chat.completions.create(
        model="text", messages=MESSAGES, metadata={"tags": "team-b", "note": "not a tag"}
    )
    client.chat.completions.create(model="text", messages=MESSAGES)
    settled(gw, 3)
    team_a = usage(gw, tag="team-a")
    assert [r["tags"] for r in team_a] == [["team-a", "feature:search"]]
    assert [r["tags"] for r in usage(gw, tag="team-b")] == [["team-b"]]
    assert usage(gw, tag="nobody") == []
    groups = {row["tag"]: row for row in usage(gw, group_by="tag")}
    assert set(groups) == {"team-a", "feature:search", "team-b", None}
    assert groups["team-a"]["requests"] == 1 and groups["team-a"]["total_tokens"] > 0


def test_a_callers_own_usage_filters_by_tag_too(gw, client):
    client.embeddings.create(model="embedding", input="x", extra_headers={"x-gateway-tags": "emb"})
    client.embeddings.create(model="embedding", input="y")
    settled(gw, 2)
    mine = httpx.get(
        gw.base_url + "/usage",
        params={"tag": "emb"},
        headers={"authorization": f"Bearer {gw.key()}"},
    ).json()["data"]
    assert len(mine) == 1 and mine[0]["capability"] == "embeddings"


@pytest.mark.parametrize(
    "header",
    ["bad tag", ",".join(f"t{n}" for n in range(11)), "x" * 65, "a*b"],
)
def test_bad_tags_are_the_clients_error(client, upstream, header):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="text", messages=MESSAGES, extra_headers={"x-gateway-tags": header}
        )
    assert bad.value.body["type"] == "invalid_request_error"
    assert bad.value.body["param"] == "x-gateway-tags"
    assert upstream.requests == []


def test_metadata_tags_must_be_a_string(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="text",
            messages=MESSAGES,
            metadata={"tags": ["a"]},  # type: ignore[dict-item]
        )
    assert bad.value.body["param"] == "metadata.tags"


def test_the_export_filters_and_groups_by_tag(gw, client):
    client.chat.completions.create(
        model="text", messages=MESSAGES, extra_headers={"x-gateway-tags": "a,b"}
    )
    client.chat.completions.create(
        model="text", messages=MESSAGES, extra_headers={"x-gateway-tags": "b"}
    )
    settled(gw, 2)
    records = asyncio.run(gw.gateway.usage_records.read(None, 0, time.time() + 60))
    assert len(with_tag(records, "a")) == 1 and len(with_tag(records, "b")) == 2
    rows = {row["tag"]: row["requests"] for row in by_tag(records)}
    assert rows == {"a": 1, "b": 2}
    assert to_csv(with_tag(records, "a")).splitlines()[1].endswith(',a,b"') or ',"a,b"' in (
        to_csv(with_tag(records, "a"))
    )
