"""LangChain ChatOpenAI and LlamaIndex OpenAILike pointed at the gateway."""

import pytest
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike


@pytest.fixture
def gw(start_gateway):
    return start_gateway()


def test_langchain_invoke_and_stream(gw, upstream):
    llm = ChatOpenAI(
        base_url=gw.base_url, api_key=gw.key(), model="text", max_retries=0, stream_usage=True
    )
    answer = llm.invoke("Say hello")
    assert answer.content.startswith("Hello from mock/ok")
    assert answer.usage_metadata["output_tokens"] == 5
    chunks = list(llm.stream("Say hello"))
    assert "".join(c.content for c in chunks).startswith("Hello from mock/ok")
    assert sum(c.usage_metadata["output_tokens"] for c in chunks if c.usage_metadata) == 5
    assert upstream.requests[-1].json["model"] == "mock/ok"


def test_llamaindex_openailike_chat_and_complete(gw, upstream):
    chat_llm = OpenAILike(
        model="text", api_base=gw.base_url, api_key=gw.key(), is_chat_model=True, max_retries=0
    )
    reply = chat_llm.chat([ChatMessage(role="user", content="Say hello")])
    assert reply.message.content.startswith("Hello from mock/ok")
    streamed = "".join(
        r.delta or "" for r in chat_llm.stream_chat([ChatMessage(role="user", content="hi")])
    )
    assert streamed.startswith("Hello")
    # OpenAILike's default is_chat_model=False calls /v1/completions
    completer = OpenAILike(model="auto", api_base=gw.base_url, api_key=gw.key(), max_retries=0)
    completion = completer.complete("def add(a, b):")
    assert completion.text.startswith("Hello from mock/code")
    assert upstream.requests[-1].path == "/v1/completions"
