"""Stability AI's image-to-video API (Stable Video Diffusion, v2beta) for video jobs.

A job is ``POST /v2beta/image-to-video``, multipart: the first frame as ``image`` (PNG or JPEG,
1024x576, 576x1024 or 768x768) and optionally ``seed``, ``cfg_scale`` and
``motion_bucket_id``; it answers ``{"id": …}``. ``GET /v2beta/image-to-video/result/{id}``
answers 202 while the job runs and 200 once it is done, with the video itself as the body
(``accept: video/*``) rather than a URL. So a poll reads only the status line and headers (the
``finish-reason`` header says ``CONTENT_FILTERED`` for a filtered video) and closes the stream
unread, and the content is the same GET again, streamed through. Stability keeps a result 24
hours after generation, and only the key that created the job may fetch it (else 404).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx

from gateway.errors import InvalidRequest

CREATE_PATH = "/image-to-video"
RESULT_PATH = "/image-to-video/result/{id}"
ACCEPT_VIDEO = "video/*"  # the video's bytes; application/json would send it as base64
OPTIONAL_FIELDS = ("seed", "cfg_scale", "motion_bucket_id")
FILTERED = "CONTENT_FILTERED"
NO_IMAGE = (
    "This model generates a video from an image (Stability's image-to-video): send the first "
    "frame as 'input_reference', an uploaded PNG or JPEG file (1024x576, 576x1024 or 768x768) "
    "or a 'data:image/...;base64,' URI."
)


def create(
    fields: dict[str, Any], files: list[tuple[str, Any]] | None
) -> tuple[dict[str, str], list[tuple[str, Any]]]:
    """(form fields, files) of the job's creation from OpenAI's ``/v1/videos`` fields: the
    ``input_reference`` image as ``image``, and Stability's own optional fields when sent.
    Without an image it is the caller's error (a 400 naming ``input_reference``)."""
    data = {name: str(fields[name]) for name in OPTIONAL_FIELDS if fields.get(name) is not None}
    return data, [("image", _image(fields, files))]


def _image(fields: dict[str, Any], files: list[tuple[str, Any]] | None) -> tuple[str, Any, str]:
    for name, (filename, stream, content_type) in files or ():
        if name == "input_reference":
            stream.seek(0)
            return filename or "image", stream, content_type or "application/octet-stream"
    reference = fields.get("input_reference")
    if isinstance(reference, str) and reference.startswith("data:image/"):
        header, _, encoded = reference.partition(",")
        content_type = header[len("data:") :].partition(";")[0]
        if not header.endswith(";base64"):
            raise InvalidRequest(NO_IMAGE, param="input_reference", code="image_required")
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                "'input_reference' is not valid base64.", param="input_reference"
            ) from None
        return "image." + content_type.rpartition("/")[2], image, content_type
    # a URL would have the gateway fetch a file of the caller's choosing: not done
    raise InvalidRequest(NO_IMAGE, param="input_reference", code="image_required")


def result_state(status: int, headers: httpx.Headers) -> tuple[str, str | None] | None:
    """(status, failure reason) told by a result answer's status and headers alone; None for
    an error answer (its body is read and judged as any job API's)."""
    if status == 202:
        return "in_progress", None
    if status != 200:
        return None
    reason = headers.get("finish-reason", "SUCCESS").upper()
    if reason == FILTERED:
        return "failed", f"Stability filtered the generated video (finish-reason {FILTERED})."
    return "completed", None
