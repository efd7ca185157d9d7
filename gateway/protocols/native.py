"""The client's own Responses or Messages body, sent as is to an upstream that speaks its API.

A bridged request carries a ``NativeRequest`` beside its chat completions body: a target whose
upstream serves the client's API itself (``responses_api: true``, ``api: anthropic``) gets the
client's body with the model rewritten and the token limit the quota allowed, instead of the
chat body. The answer comes back in the client's API already; ``NativeTap`` reads its usage and
end out of the stream as it is relayed, and ``chat_usage`` puts the usage in the terms the
meter reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.config.model import Model
from gateway.providers import anthropic
from gateway.providers.openai import build_request
from gateway.secret import Secret

RESPONSES, MESSAGES = "responses", "messages"
# the httpx request extension that marks a native request (read back from its answer)
NATIVE_EXTENSION = "gateway_native_api"
# Responses stream events that end it: completed (or cut by max_output_tokens), or failed
_RESPONSES_DONE = (b"response.completed", b"response.incomplete")
_RESPONSES_FAILED = (b"response.failed",)


@dataclass
class NativeRequest:
    api: str  # RESPONSES or MESSAGES
    body: dict[str, Any]  # the client's body, less what the gateway serves itself

    def serves(self, model: Model) -> bool:
        return model.upstream.speaks(self.api)

    def request(
        self, model: Model, chat: dict[str, Any], *, api_key: Secret | None, request_id: str
    ) -> httpx.Request:
        """The upstream request for ``model``; ``chat``: the chat body as the pipeline shaped
        it, whose ``max_tokens`` is the limit the quota allows."""
        body = {**self.body, "model": model.upstream_model}
        limit = chat.get("max_tokens")
        if self.api == RESPONSES:
            if isinstance(limit, int):
                body["max_output_tokens"] = limit
            request = build_request(
                model,
                "/responses",
                json_body=orjson.dumps(body),
                api_key=api_key,
                request_id=request_id,
            )
        else:
            if isinstance(limit, int):
                body["max_tokens"] = limit
            payload = orjson.dumps(body)
            request = anthropic.post_messages(
                model, payload, api_key=api_key, request_id=request_id
            )
        request.extensions[NATIVE_EXTENSION] = self.api
        return request


def native_api(response: httpx.Response) -> str | None:
    """The client API an upstream answer is in, when its request was a native one."""
    try:
        request = response.request
    except RuntimeError:  # a response built without a request (tests' stand-ins)
        return None
    api = request.extensions.get(NATIVE_EXTENSION)
    return api if isinstance(api, str) else None


def chat_usage(api: str, usage: Any) -> dict[str, Any] | None:
    """A native answer's usage in chat completions' terms (what the meter and logs read)."""
    if not isinstance(usage, dict):
        return None
    if api == MESSAGES:
        return anthropic.openai_usage(usage)
    prompt = anthropic.non_negative_int(usage.get("input_tokens"))
    completion = anthropic.non_negative_int(usage.get("output_tokens"))
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if isinstance(details := usage.get("input_tokens_details"), dict):
        out["prompt_tokens_details"] = details
    if isinstance(details := usage.get("output_tokens_details"), dict):
        out["completion_tokens_details"] = details
    return out


class NativeTap:
    """Reads a native stream's complete events as they are relayed: its usage, whether it
    came to its end, whether the upstream reported a failure in it. Only events that can say
    so are parsed."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.usage: dict[str, Any] | None = None
        self.completed = False
        self.failed = False
        self.events = 0
        self._anthropic: dict[str, Any] = {}

    def feed(self, events: bytes) -> None:
        for event in events.split(b"\n\n"):
            if event.strip():
                self.events += 1
                self._event(event)

    def _event(self, event: bytes) -> None:
        if self.api == RESPONSES:
            if any(name in event for name in _RESPONSES_DONE + _RESPONSES_FAILED):
                document = _data(event)
                kind = document.get("type")
                response = document.get("response")
                if kind in ("response.completed", "response.incomplete", "response.failed"):
                    self.completed = kind != "response.failed"
                    self.failed = kind == "response.failed"
                    if isinstance(response, dict):
                        self.usage = chat_usage(RESPONSES, response.get("usage")) or self.usage
            elif b'"error"' in event and _data(event).get("type") == "error":
                self.failed = True
            return
        if b"message_start" in event or b"message_delta" in event:
            document = _data(event)
            kind = document.get("type")
            found = None
            if kind == "message_start" and isinstance(document.get("message"), dict):
                found = document["message"].get("usage")
            elif kind == "message_delta":
                found = document.get("usage")
            if isinstance(found, dict):
                self._anthropic.update({k: v for k, v in found.items() if v is not None})
                self.usage = anthropic.openai_usage(self._anthropic)
        elif b"message_stop" in event and _data(event).get("type") == "message_stop":
            self.completed = True
        elif b'"error"' in event and _data(event).get("type") == "error":
            self.failed = True

    def error_event(self, message: str, code: str) -> bytes:
        """The in-band error that ends a stream the upstream cut, in the API's own shape."""
        data: dict[str, Any]
        if self.api == RESPONSES:
            data = {"type": "error", "code": code, "message": message, "param": None}
        else:
            data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


def _data(event: bytes) -> dict[str, Any]:
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    try:
        document = orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}
