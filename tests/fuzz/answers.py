"""What every fuzzed answer must be: below 500 (or an upstream failure), errors OpenAI-shaped."""

from __future__ import annotations

from typing import Any

UPSTREAM_CODES = {"upstream_error", "upstream_timeout", "no_upstream_available"}


def check_openai_answer(where: str, status: int, body: Any, content_type: str) -> None:
    if status >= 500:
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        assert status in (502, 503, 504) and code in UPSTREAM_CODES, where
    if status >= 400:
        assert content_type.startswith("application/json"), where
        assert isinstance(body, dict) and set(body) == {"error"}, where
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, where
        assert isinstance(error["message"], str) and isinstance(error["type"], str), where


def check_anthropic_answer(where: str, status: int, body: Any, content_type: str) -> None:
    """/v1/messages answers errors in the Messages API's shape."""
    if status >= 500:
        assert status in (502, 503, 504), where
    if status >= 400:
        assert content_type.startswith("application/json"), where
        assert isinstance(body, dict) and set(body) == {"type", "error"}, where
        assert body["type"] == "error", where
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"type", "message"}, where
        assert isinstance(error["message"], str) and isinstance(error["type"], str), where
