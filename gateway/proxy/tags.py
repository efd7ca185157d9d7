"""A request's spend tags: ``x-gateway-tags: a,b`` and chat completions' ``metadata.tags``.

Tags end up on the usage record (``tags``) so that usage and its export can be filtered and
grouped by them. The header's tags come first, then ``metadata["tags"]`` (a comma-separated
string, as OpenAI's metadata values are strings); other metadata keys are not tags and pass
upstream untouched. At most ``MAX_TAGS`` distinct tags of 1-``MAX_TAG_LENGTH`` characters from
``[A-Za-z0-9_.:/=-]``; anything else is the client's error (400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.errors import InvalidRequest

HEADER = "x-gateway-tags"
MAX_TAGS = 10
MAX_TAG_LENGTH = 64
TAG = re.compile(r"[A-Za-z0-9_.:/=-]{1,64}")  # MAX_TAG_LENGTH
METADATA_ENDPOINTS = frozenset({"chat.completions", "responses"})


def request_tags(
    headers: Mapping[str, str], fields: Mapping[str, Any], endpoint: str
) -> tuple[str, ...]:
    """The request's tags, validated; ``()`` when it has none (the common case: one lookup
    of the header and one of ``metadata``)."""
    header = headers.get(HEADER)
    metadata = fields.get("metadata") if endpoint in METADATA_ENDPOINTS else None
    if header is None and not metadata:
        return ()
    found = _split(header, HEADER) if header is not None else []
    if metadata:
        found += _metadata_tags(metadata)
    tags = tuple(dict.fromkeys(found))
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"At most {MAX_TAGS} tags are allowed, got {len(tags)}.", param=HEADER)
    return tags


def _metadata_tags(metadata: Any) -> list[str]:
    if not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    value = metadata.get("tags")
    if value is None:
        return []
    if not isinstance(value, str):
        raise InvalidRequest(
            "'metadata.tags' must be a comma-separated string.", param="metadata.tags"
        )
    return _split(value, "metadata.tags")


def _split(value: str, where: str) -> list[str]:
    tags = [part.strip() for part in value.split(",")]
    tags = [tag for tag in tags if tag]
    for tag in tags:
        if not TAG.fullmatch(tag):
            shown = tag[:MAX_TAG_LENGTH] + ("…" if len(tag) > MAX_TAG_LENGTH else "")
            raise InvalidRequest(
                f"Invalid tag {shown!r} in {where}: 1-{MAX_TAG_LENGTH} characters of "
                "A-Z a-z 0-9 _ . : / = -.",
                param=where,
            )
    return tags
