"""The real openai SDK (sync and async) against the gateway in front of the mock upstream."""

import asyncio
import base64
import struct

import httpx
import openai
import pytest

from tests.support import MOCK_KEY


@pytest.fixture
def gw(start_gateway):
    return start_gateway()


@pytest.fixture
def client(gw):
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        yield client


def test_chat_non_streamed_with_indicators(client, upstream):
    raw = client.chat.completions.with_raw_response.create(
        model="text",
        messages=[{"role": "user", "content": "say hi"}],
        extra_body={"purpose": "chat"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Hello from mock/ok")
    assert completion.usage.prompt_tokens == 3 and completion.usage.completion_tokens == 5
    h = raw.headers
    assert h["x-gateway-provider"] == "mock" and h["x-gateway-model"] == "ok"
    assert h["x-gateway-upstream-model"] == "mock/ok" and h["x-gateway-tier"] == "free"
    assert h["x-gateway-fallback"] == "false" and h["x-gateway-attempts"] == "1"
    assert h["x-gateway-request-id"] == raw.request_id
    sent = upstream.requests[-1]
    assert sent.json["model"] == "mock/ok" and "purpose" not in sent.json
    assert sent.headers["authorization"] == f"Bearer {MOCK_KEY}"


def test_other_fields_pass_through_untouched(client, upstream):
    extras = {
        "top_k": 40,
        "repetition_penalty": 1.1,
        "seed": 7,
        "logprobs": True,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    client.chat.completions.create(
        model="ok", messages=[{"role": "user", "content": "x"}], extra_body=extras
    )
    sent = upstream.requests[-1].json
    for key, value in extras.items():
        assert sent[key] == value


def test_incoming_request_id_is_reused(client):
    raw = client.chat.completions.with_raw_response.create(
        model="text",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"x-request-id": "my-trace-42"},
    )
    assert raw.headers["x-gateway-request-id"] == "my-trace-42"


def test_chat_stream_without_usage_hides_the_usage_chunk(client, upstream):
    stream = client.chat.completions.create(
        model="text", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from mock/ok")
    assert all(c.choices for c in chunks)  # no usage-only chunk
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="text",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_async_client_streams(gw):
    async def scenario():
        async with openai.AsyncOpenAI(
            base_url=gw.base_url, api_key=gw.key(), max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="text", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            completion = await client.chat.completions.create(
                model="text", messages=[{"role": "user", "content": "hi"}]
            )
            return "".join(parts), completion

    text, completion = asyncio.run(scenario())
    assert text == completion.choices[0].message.content


def test_completions_default_to_the_code_route(client, upstream):
    completion = client.completions.create(model="auto", prompt="def add(a, b):")
    assert completion.choices[0].text.startswith("Hello from mock/code")
    stream = client.completions.create(model="auto", prompt="x", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices).startswith("Hello")


def test_embeddings_base64_round_trip(client, upstream):
    result = client.embeddings.create(model="auto", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert upstream.requests[-1].json["encoding_format"] == "base64"


def test_images(client):
    result = client.images.generate(model="image", prompt="a cat", n=2)
    assert len(result.data) == 2


def test_speech_streams_binary_audio(client, upstream):
    with client.audio.speech.with_streaming_response.create(
        model="tts", voice="alloy", input="Hello there"
    ) as response:
        audio = b"".join(response.iter_bytes())
        assert response.headers["x-gateway-model"] == "tts"
    assert audio.startswith(b"ID3") and len(audio) == 4096


def test_transcription_multipart_upload(client, upstream, tmp_path):
    audio = tmp_path / "speech.mp3"
    audio.write_bytes(b"\x00" * (3 * 1024 * 1024))
    with audio.open("rb") as file:
        result = client.audio.transcriptions.create(model="stt", file=file, language="en")
    assert result.text == f"transcribed {3 * 1024 * 1024} bytes"
    sent = upstream.requests[-1]
    assert sent.form["model"] == "mock/whisper" and sent.form["language"] == "en"
    assert sent.file_sizes["file"] == 3 * 1024 * 1024
    with audio.open("rb") as file:
        translated = client.audio.translations.create(model="auto", file=file)
    assert translated.text.startswith("transcribed")


def test_models_list_and_retrieve(client):
    ids = {model.id for model in client.models.list()}
    assert {"text", "ok", "ok-b", "embed"} <= ids
    assert client.models.retrieve("ok").owned_by == "mock"
    assert client.models.retrieve("mock/ok").id == "mock/ok"  # ids may contain '/'
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope/nothing")


def test_moderation_rerank_and_passthrough(client, gw):
    assert client.moderations.create(model="moderation", input="hello").results
    headers = {"authorization": f"Bearer {gw.key()}"}
    reranked = httpx.post(
        gw.base_url + "/rerank",
        headers=headers,
        json={"model": "rerank", "query": "cats", "documents": ["dogs", "cats are nice"]},
    )
    assert reranked.status_code == 200 and reranked.json()["results"]
    video = httpx.post(
        gw.base_url + "/videos/generations",
        headers=headers,
        json={"model": "video", "prompt": "waves"},
    )
    assert video.status_code == 200 and video.json()["model"] == "mock/video"
    assert video.headers["x-gateway-model"] == "video"


def test_exception_classes(gw):
    with openai.OpenAI(base_url=gw.base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="gpt-17", messages=[])
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="fail-500", messages=[])


def test_embedding_bytes_decode_as_floats(gw):
    response = httpx.post(
        gw.base_url + "/embeddings",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "embed", "input": "x", "encoding_format": "base64"},
    )
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert len(struct.unpack("<8f", raw)) == 8
