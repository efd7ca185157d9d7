"""Source indicators in the plan's shape (provider_id, display_name, is_free_tier,
is_fallback) in JSON answers, in the first chunk of a stream and on /v1/models, on as shipped;
the openai SDK, LangChain and LlamaIndex still parse every answer, streamed and not."""

from __future__ import annotations

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

from gateway.config.load import load_config
from gateway.proxy.source_indicators import SourceIndicators, provider_identity, spliced
from tests.support import DEFAULT_ROUTES

PLAN_FIELDS = {"provider_id", "display_name", "is_free_tier", "is_fallback"}
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def gw(start_gateway):
    routes = {**DEFAULT_ROUTES, "text": ["ok", "ok-b"], "code": ["fail-500", "code-ok"]}
    return start_gateway({"free": {"routes": routes}, "premium": {"routes": routes}})


def sdk(gw, tier="free"):
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key(tier), max_retries=0)


def test_a_json_answer_carries_the_plans_fields(gw):
    with sdk(gw) as client:
        completion = client.chat.completions.create(model="text", messages=MESSAGES)
    assert completion.choices[0].message.content.startswith("Hello from mock/ok")
    indicator = completion.model_extra["model_source_indicator"]
    assert set(indicator) >= PLAN_FIELDS
    assert indicator["provider_id"] == "mock" and indicator["is_free_tier"] is True
    assert indicator["is_fallback"] is False and indicator["model"] == "ok"
    assert indicator["fallback"] is False and indicator["tier"] == "free"  # today's fields kept


def test_a_fallback_answer_says_so_in_body_and_headers(gw):
    with sdk(gw, "premium") as client:
        raw = client.chat.completions.with_raw_response.create(model="code", messages=MESSAGES)
    indicator = raw.parse().model_extra["model_source_indicator"]
    assert indicator["is_fallback"] is True and indicator["is_free_tier"] is False
    assert raw.headers["x-gateway-fallback"] == "true"  # the headers stay
    assert raw.headers["x-gateway-provider"] == "mock"


def test_the_first_chunk_of_a_stream_carries_the_indicator_only_once(gw):
    with sdk(gw) as client:
        chunks = list(client.chat.completions.create(model="text", messages=MESSAGES, stream=True))
    marked = [c for c in chunks if c.model_extra.get("model_source_indicator")]
    assert marked == [chunks[0]]
    assert set(chunks[0].model_extra["model_source_indicator"]) >= PLAN_FIELDS
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from mock/ok")


def test_completions_carry_it_too(gw):
    with sdk(gw) as client:
        completion = client.completions.create(model="code", prompt="def f():")
        chunks = list(client.completions.create(model="code", prompt="def f():", stream=True))
    assert completion.model_extra["model_source_indicator"]["is_fallback"] is True
    assert "model_source_indicator" in chunks[0].model_extra


def test_langchain_parses_answers_with_indicators(gw):
    llm = ChatOpenAI(
        base_url=gw.base_url, api_key=gw.key(), model="text", max_retries=0, stream_usage=True
    )
    assert llm.invoke("Say hello").content.startswith("Hello from mock/ok")
    chunks = list(llm.stream("Say hello"))
    assert "".join(c.content for c in chunks).startswith("Hello from mock/ok")
    assert sum(c.usage_metadata["output_tokens"] for c in chunks if c.usage_metadata) == 5


def test_llamaindex_parses_answers_with_indicators(gw):
    chat_llm = OpenAILike(
        model="text", api_base=gw.base_url, api_key=gw.key(), is_chat_model=True, max_retries=0
    )
    reply = chat_llm.chat([ChatMessage(role="user", content="Say hello")])
    assert reply.message.content.startswith("Hello from mock/ok")
    streamed = "".join(
        r.delta or "" for r in chat_llm.stream_chat([ChatMessage(role="user", content="hi")])
    )
    assert streamed.startswith("Hello")
    completer = OpenAILike(model="text", api_base=gw.base_url, api_key=gw.key(), max_retries=0)
    assert completer.complete("hello").text.startswith("Hello from mock/ok")
    assert "".join(r.delta or "" for r in completer.stream_complete("hi")).startswith("Hello")


def test_models_list_carries_indicators_tier_and_filters_by_modality(gw):
    headers = {"authorization": f"Bearer {gw.key()}"}
    listed = httpx.get(gw.base_url + "/models", headers=headers).json()
    assert listed["user_tier"] == "free" and listed["free_tier_enabled"] is True
    by_id = {entry["id"]: entry for entry in listed["data"]}
    assert set(by_id["text"]) >= PLAN_FIELDS and by_id["text"]["provider_id"] == "mock"
    assert by_id["ok"]["is_fallback"] is False and by_id["ok-b"]["is_fallback"] is True
    text_only = httpx.get(gw.base_url + "/models?modality=text", headers=headers).json()
    assert text_only["data"] and {e["modality"] for e in text_only["data"]} == {"text"}
    assert {"text", "ok", "ok-b"} <= {e["id"] for e in text_only["data"]}
    bad = httpx.get(gw.base_url + "/models?modality=smell", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "modality"
    with sdk(gw) as client:  # the SDK still lists them
        assert {"text", "ok"} <= {m.id for m in client.models.list()}


def test_premium_sees_is_free_tier_false(gw):
    headers = {"authorization": f"Bearer {gw.key('premium')}"}
    listed = httpx.get(gw.base_url + "/models", headers=headers).json()
    assert listed["user_tier"] == "premium"
    assert all(entry["is_free_tier"] is False for entry in listed["data"])


def test_the_shipped_together_models_are_together_ai() -> None:
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2], env={})
    assert provider_identity(config.models["llama-3.1-8b"].upstream) == (
        "together_ai",
        "Together AI",
    )
    assert provider_identity(config.models["gpt-4o"].upstream) == ("openai", "OpenAI")
    assert config.settings.model_source_indicator is True
    assert SourceIndicators(config)  # every (tier, model) pair serialises


def test_splicing_keeps_the_body_valid_json() -> None:
    import orjson

    for body in (b'{"a": 1}', b"{}", b'{"a": {"b": []}}\n'):
        document = orjson.loads(spliced(body, b'{"x":true}'))
        assert document["model_source_indicator"] == {"x": True}
    assert spliced(b"[1]", b"{}") is None


def test_with_the_flag_off_no_body_or_chunk_carries_it(start_gateway):
    gw = start_gateway(tiers_extra={"flags": {"together_ai_ui_indicators": False}})
    with sdk(gw) as client:
        completion = client.chat.completions.create(model="text", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="text", messages=MESSAGES, stream=True))
    assert "model_source_indicator" not in (completion.model_extra or {})
    assert all("model_source_indicator" not in (c.model_extra or {}) for c in chunks)
