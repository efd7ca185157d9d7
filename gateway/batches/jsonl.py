"""A batch input file, line by line: JSONL whose every line is one request for one endpoint.

Checked twice: the shape at upload (``purpose=batch``), the endpoint and models at batch
creation. Errors name the line (1-based, as an editor shows it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from gateway.batches.records import BATCH_ENDPOINTS
from gateway.errors import GatewayError, InvalidRequest

MAX_LINES = 50_000  # OpenAI's limit per batch
MAX_CUSTOM_ID = 512


@dataclass(frozen=True)
class BatchLine:
    number: int  # the file's line number (1-based)
    custom_id: str
    url: str
    body: dict[str, Any]


def parse_lines(data: bytes) -> list[BatchLine]:
    """Every request of the file, or a 400 naming the first bad line."""
    lines: list[BatchLine] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(lines) >= MAX_LINES:
            raise InvalidRequest(f"A batch file holds at most {MAX_LINES} requests.")
        line = _parse(number, raw)
        if line.custom_id in seen:
            _fail(number, f"duplicate custom_id {line.custom_id!r}", "custom_id")
        seen.add(line.custom_id)
        lines.append(line)
    if not lines:
        raise InvalidRequest("The batch file holds no requests.", param="file")
    return lines


def _parse(number: int, raw: bytes) -> BatchLine:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _fail(number, f"not valid JSON ({exc.msg})", None)
    if not isinstance(item, dict):
        _fail(number, "must be a JSON object", None)
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID:
        _fail(number, f"'custom_id' must be a string of 1-{MAX_CUSTOM_ID} characters", "custom_id")
    if item.get("method") != "POST":
        _fail(number, "'method' must be \"POST\"", "method")
    url = item.get("url")
    if url not in BATCH_ENDPOINTS:
        _fail(number, f"'url' must be one of {', '.join(BATCH_ENDPOINTS)}", "url")
    body = item.get("body")
    if not isinstance(body, dict):
        _fail(number, "'body' must be a JSON object", "body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        _fail(number, "'body.model' must name a model", "body.model")
    if body.get("stream") is True:
        _fail(number, "'body.stream' is not supported in a batch", "body.stream")
    return BatchLine(number, custom_id, url, body)


def check_for_batch(
    lines: list[BatchLine], endpoint: str, check_model: Callable[[str, dict[str, Any]], None]
) -> None:
    """Every line for ``endpoint``, with a model ``check_model`` accepts (it raises)."""
    for line in lines:
        if line.url != endpoint:
            _fail(
                line.number, f"'url' is {line.url}, but the batch's endpoint is {endpoint}", "url"
            )
        try:
            check_model(line.body["model"], line.body)
        except GatewayError as error:
            _fail(line.number, error.message, "body.model")


def _fail(number: int, problem: str, param: str | None) -> NoReturn:
    raise InvalidRequest(f"Line {number} of the batch file: {problem.rstrip('.')}.", param=param)
