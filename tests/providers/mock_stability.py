"""A local Stability AI image-to-video API, written from its public v2beta reference.

Stable Video Diffusion, as platform.stability.ai's API reference is mirrored by generated
clients and OpenAPI copies (see docs/providers.md, "Stability AI"):

- ``POST /v2beta/image-to-video``, multipart: ``image`` (PNG or JPEG of 1024x576, 576x1024 or
  768x768) and optional ``seed`` (0..4294967294), ``cfg_scale`` (0..10) and
  ``motion_bucket_id`` (1..255); answers 200 ``{"id": <64 hex>}``.
- ``GET /v2beta/image-to-video/result/{id}``: 202 ``{"id", "status": "in-progress"}`` at the
  first poll, then 200: with ``accept: video/*`` (the default) the mp4 itself, with the
  ``finish-reason`` and ``seed`` headers; with ``accept: application/json``
  ``{"video": <base64>, "finish_reason", "seed"}``. Only the key that created a generation may
  fetch it (any other: 404).
- Errors are ``{"id", "name", "errors": [...]}``: 400 invalid fields, 401 a wrong key (the
  message quotes the key sent, to prove the gateway redacts it), 403 content moderation, 404
  an unknown id, 413 an image over ``MAX_IMAGE_BYTES`` (the mock's own limit), 422, 429, 500.

The mock's own switches, by ``seed``: 403, 422, 429 or 500 answer that error at creation;
``FILTERED_SEED`` makes a generation that finishes CONTENT_FILTERED.
"""

from __future__ import annotations

import base64
import secrets
import struct
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.providers.mock_video import VIDEO_BYTES

STABILITY_KEY = "sk-mockstability0123456789abcdefABCDEF"
SIZES = {(1024, 576), (576, 1024), (768, 768)}
MAX_IMAGE_BYTES = 64 * 1024
FILTERED_SEED = 13
ERROR_SEEDS = {
    403: ("content_moderation", "Your request was flagged by our content moderation system."),
    422: ("invalid_image", "The image could not be processed."),
    429: ("rate_limit_exceeded", "You have exceeded the rate limit of 150 requests per 10 s."),
    500: ("internal_error", "An unexpected server error occurred, please try again."),
}
RANGES = {"seed": (0, 4294967294), "cfg_scale": (0, 10), "motion_bucket_id": (1, 255)}


def png(width: int, height: int, padding: int = 64) -> bytes:
    """A PNG's signature and IHDR (all the mock reads), then filler bytes."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x02\x00\x00\x00"
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + b"\x00\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * padding


def jpeg(width: int, height: int) -> bytes:
    """A JPEG's start and baseline frame header (all the mock reads)."""
    frame = b"\x08" + struct.pack(">HH", height, width) + b"\x03" + b"\x00" * 9
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9"


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG, None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        at = 2
        while at + 9 < len(data) and data[at] == 0xFF:
            marker, length = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                height, width = struct.unpack(">HH", data[at + 5 : at + 9])
                return int(width), int(height)
            at += 2 + length
    return None


def _error(status: int, name: str, *errors: str) -> JSONResponse:
    body = {"id": secrets.token_hex(16), "name": name, "errors": list(errors)}
    return JSONResponse(body, status_code=status)


class MockStability:
    def __init__(self) -> None:
        self.generations: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.submissions: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # every request's, in order
        self.results: list[dict[str, str]] = []  # the result GETs' headers
        self.app = Starlette(
            routes=[
                Route("/v2beta/image-to-video", self.create, methods=["POST"]),
                Route("/v2beta/image-to-video/result/{id}", self.result, methods=["GET"]),
            ]
        )

    def _key(self, request: Request) -> str | None:
        self.headers.append(dict(request.headers))
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return key if scheme == "Bearer" and key else None

    async def create(self, request: Request) -> Response:
        key = self._key(request)
        if key != STABILITY_KEY:
            return _error(401, "unauthorized", f"authorization: invalid API key '{key}'")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _error(400, "bad_request", "content-type: must be multipart/form-data")
        form = await request.form()
        image = form.get("image")
        if not isinstance(image, UploadFile):
            return _error(400, "bad_request", "image: required")
        data = await image.read()
        if len(data) > MAX_IMAGE_BYTES:
            return _error(413, "payload_too_large", "image: the file is too large")
        size = image_size(data)
        if size is None:
            return _error(400, "bad_request", "image: must be a PNG or JPEG")
        if size not in SIZES:
            sizes = ", ".join(f"{w}x{h}" for w, h in sorted(SIZES))
            return _error(400, "bad_request", f"image: dimensions must be one of {sizes}")
        fields: dict[str, float] = {}
        for name, (low, high) in RANGES.items():
            value = form.get(name)
            if value is None:
                continue
            try:
                fields[name] = float(str(value))
            except ValueError:
                return _error(400, "bad_request", f"{name}: must be a number")
            if not low <= fields[name] <= high:
                return _error(400, "bad_request", f"{name}: must be between {low} and {high}")
        seed = int(fields.get("seed", 0))
        if seed in ERROR_SEEDS:
            return _error(seed, *ERROR_SEEDS[seed])
        generation_id = secrets.token_hex(32)
        self.submissions.append({**fields, "image": data, "content_type": image.content_type})
        self.generations[generation_id] = {"key": key, "seed": seed or 42}
        self.polls[generation_id] = 0
        return JSONResponse({"id": generation_id})

    async def result(self, request: Request) -> Response:
        key = self._key(request)
        self.results.append(dict(request.headers))
        generation_id = request.path_params["id"]
        generation = self.generations.get(generation_id)
        if key != STABILITY_KEY or generation is None or generation["key"] != key:
            return _error(404, "not_found", f"id: no generation found for {generation_id}")
        self.polls[generation_id] += 1
        if self.polls[generation_id] == 1:
            return JSONResponse({"id": generation_id, "status": "in-progress"}, status_code=202)
        seed = generation["seed"]
        reason = "CONTENT_FILTERED" if seed == FILTERED_SEED else "SUCCESS"
        if request.headers.get("accept", "video/*").startswith("application/json"):
            video = base64.b64encode(VIDEO_BYTES).decode()
            return JSONResponse({"video": video, "finish_reason": reason, "seed": seed})
        headers = {"finish-reason": reason, "seed": str(seed)}
        return Response(VIDEO_BYTES, media_type="video/mp4", headers=headers)
