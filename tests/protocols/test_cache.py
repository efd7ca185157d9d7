"""The response cache serves the bridged endpoints: the chat answer is cached, and a hit is
translated like a fresh answer (JSON and streams)."""

from __future__ import annotations

import anthropic
import openai

from tests.conftest import StartGateway
from tests.mock_upstream import MockUpstream
from tests.protocols.conftest import ROUTES


def test_hits_are_translated(start_gateway: StartGateway, upstream: MockUpstream) -> None:
    gw = start_gateway({"free": {"routes": ROUTES, "cache": {"text": {"ttl_s": 60}}}})
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    first = sdk.responses.with_raw_response.create(model="ok", input="Hi")
    second = sdk.responses.with_raw_response.create(model="ok", input="Hi")
    assert (first.headers["x-gateway-cache"], second.headers["x-gateway-cache"]) == ("miss", "hit")
    assert second.parse().output_text == first.parse().output_text
    assert second.parse().id != first.parse().id  # a response of its own
    for _ in range(2):
        with sdk.responses.stream(model="ok", input="Stream") as stream:
            final = stream.get_final_response()
        assert final.output_text == "Hello from mock/ok w4 w5"
        assert final.usage is not None and final.usage.output_tokens == 5
    claude = anthropic.Anthropic(base_url=gw.url, api_key=gw.key(), max_retries=0)
    for _ in range(2):
        message = claude.messages.create(
            model="ok", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        )
        assert message.content[0].type == "text"
    assert len(upstream.requests) == 3  # one per distinct request
