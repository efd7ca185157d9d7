"""Local usage estimates, used when the upstream reports no usage (records get ``estimated``).

* Text: ``ceil(characters / 4)`` tokens (OpenAI's rule of thumb for English).
* Prompt of a request body: per chat message ``ceil(chars / 4) + 4`` (the 4 covers role and
  separators), counting string content, the ``text`` of list parts, tool-call names and
  arguments, and 85 tokens per image part (OpenAI's low-detail image cost); plus ``prompt`` and
  ``input`` as a string, a list of strings, a list of token ids (each id one token) or a list
  of such lists (a list of message objects, as the Responses API sends, counts like messages).
* Text to speech: ~15 characters per second of speech (about 150 words a minute).
* Speech to text: the upload's duration, see ``audio_duration``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

from gateway.media.audio_duration import audio_duration_ms

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_IMAGE = 85
TTS_CHARS_PER_SECOND = 15
# Prompt tokens a request may use beyond one per byte of its body: the chat template, a
# provider's system prompt, images sent by URL (a high-detail image is ~1,500 tokens).
PROMPT_ALLOWANCE_TOKENS = 16_384
IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})


def estimate_text_tokens(text: str) -> int:
    return tokens_for_chars(len(text))


def tokens_for_chars(chars: int) -> int:
    return math.ceil(max(0, chars) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """Runs once per request: the usual chat body (a list of messages, each a dict with text
    content) is counted in this one loop, and a field the body does not have is skipped."""
    total = 0
    messages = body.get("messages")
    if type(messages) is list:
        for message in messages:
            if type(message) is dict:
                content = message.get("content")
                if type(content) is str and message.get("tool_calls") is None:
                    total += TOKENS_PER_MESSAGE - (-len(content) // CHARS_PER_TOKEN)
                else:
                    total += TOKENS_PER_MESSAGE + _message_tokens(message)
            else:
                total += 1 if isinstance(message, int) else _input_tokens(message)
    elif messages is not None:
        total = _input_tokens(messages)
    for field in ("prompt", "input"):
        value = body.get(field)
        if value is not None:
            total += _input_tokens(value)
    return total


def prompt_tokens_most(body_bytes: int) -> int:
    """The most prompt tokens an upstream may believably report for a JSON body of
    ``body_bytes`` (0: unknown, no bound): a token is at least one byte of text."""
    return body_bytes + PROMPT_ALLOWANCE_TOKENS if body_bytes > 0 else 0


def tts_audio_ms(chars: int) -> int:
    return math.ceil(chars * 1000 / TTS_CHARS_PER_SECOND)


def stt_audio_ms(header: bytes, size: int, filename: str, content_type: str) -> int:
    return audio_duration_ms(header, size, filename, content_type)


def _input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return estimate_text_tokens(value)
    if _is_mapping(value):
        return TOKENS_PER_MESSAGE + _message_tokens(value)
    if isinstance(value, list):
        total = 0
        for item in value:
            total += 1 if isinstance(item, int) else _input_tokens(item)
        return total
    return 0


def _message_tokens(message: Mapping[str, Any]) -> int:
    chars, images = 0, 0
    content = message.get("content")
    parts = [content] if isinstance(content, str) else content if isinstance(content, list) else []
    for part in parts:
        if isinstance(part, str):
            chars += len(part)
        elif _is_mapping(part):
            if isinstance(part.get("text"), str):
                chars += len(part["text"])
            elif part.get("type") in IMAGE_PART_TYPES:
                images += 1
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if _is_mapping(call) else None
        if _is_mapping(function):
            chars += sum(len(v) for v in function.values() if isinstance(v, str))
    return tokens_for_chars(chars) + images * TOKENS_PER_IMAGE


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, answered at once for a dict (what JSON gives): the
    abstract class's check is slow, and a prompt's every message and part is asked."""
    return type(value) is dict or isinstance(value, Mapping)
