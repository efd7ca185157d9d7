"""The ``settings:`` and ``passthrough:`` sections of the config files, read and validated."""

from __future__ import annotations

import re
from typing import TypeVar

from gateway.config.model import MODALITIES, ContentUrlPolicy, Settings
from gateway.config.reader import Node

T = TypeVar("T")
# A canonical path segment (see gateway.http.paths), or `*` for any one segment.
_PATH_SEGMENT = re.compile(r"\*|(?!\.\.?$)[A-Za-z0-9\-._~:@+,=]+")
KIB = 1024
MIB = 1024 * KIB


def passthrough_section(node: Node) -> dict[str, frozenset[str]]:
    """``/videos/generations: [video]``: a POST path below /v1 → the routes that may serve it."""
    declared: dict[str, frozenset[str]] = {}
    if not node.present() or not node.mapping():
        return declared
    for path, routes in node.items():
        segments = path.split("/")
        if segments[0] or not all(_PATH_SEGMENT.fullmatch(part) for part in segments[1:]):
            node.child(path, None).fail("expected a path like /videos/generations (no ., .., ?)")
            continue
        names = [element.choice(MODALITIES, "") for element in routes.elements()]
        declared[path] = frozenset(name for name in names if name)
    return declared


def settings_section(node: Node) -> Settings:
    d = Settings()
    if not node.present():
        return d
    node.mapping(
        {
            "max_body_mb",
            "model_source_indicator",
            "on_store_error",
            "usage_stream_maxlen",
            "usage_buffer_max",
            "shutdown_grace_s",
            "reservation_lease_s",
            "tier_budget_shards",
            "max_upstream_body_mb",
            "max_sse_event_kb",
            "max_upstream_header_kb",
            "max_upstream_headers",
            "readiness",
            "responses_ttl_days",
            "video_content_hosts",
            "video_content_allow_insecure",
            "max_open_video_jobs",
        }
    )
    return Settings(
        max_body_bytes=_bytes(node.get("max_body_mb"), MIB, d.max_body_bytes),
        model_source_indicator=node.get("model_source_indicator").boolean(True),
        on_store_error=node.get("on_store_error").choice(("allow", "deny"), d.on_store_error),
        usage_stream_maxlen=_or(
            node.get("usage_stream_maxlen").integer(None, minimum=1), d.usage_stream_maxlen
        ),
        usage_buffer_max=_or(
            node.get("usage_buffer_max").integer(None, minimum=1), d.usage_buffer_max
        ),
        shutdown_grace_s=_or(node.get("shutdown_grace_s").number(None), d.shutdown_grace_s),
        reservation_lease_s=_or(
            node.get("reservation_lease_s").integer(None, minimum=10), d.reservation_lease_s
        ),
        tier_budget_shards=_or(
            node.get("tier_budget_shards").integer(None, minimum=1),
            d.tier_budget_shards,
        ),
        max_upstream_body_bytes=_bytes(
            node.get("max_upstream_body_mb"), MIB, d.max_upstream_body_bytes
        ),
        max_sse_event_bytes=_bytes(node.get("max_sse_event_kb"), KIB, d.max_sse_event_bytes),
        max_upstream_header_bytes=_bytes(
            node.get("max_upstream_header_kb"), KIB, d.max_upstream_header_bytes
        ),
        max_upstream_headers=_or(
            node.get("max_upstream_headers").integer(None, minimum=1), d.max_upstream_headers
        ),
        readiness=node.get("readiness").choice(("strict", "lenient"), d.readiness),
        responses_ttl_s=max(
            1,
            round(_or(node.get("responses_ttl_days").number(None, minimum=0.001), 30.0) * 86400),
        ),
        video_content=ContentUrlPolicy(
            hosts=_hosts(node.get("video_content_hosts")),
            allow_insecure=node.get("video_content_allow_insecure").boolean(False),
        ),
        max_open_video_jobs=_or(
            node.get("max_open_video_jobs").integer(None, minimum=1), d.max_open_video_jobs
        ),
    )


def _hosts(node: Node) -> frozenset[str]:
    if not node.present():
        return frozenset()
    return frozenset(
        host.lower().rstrip(".") for element in node.elements() if (host := element.string())
    )


def _bytes(node: Node, unit: int, default: int) -> int:
    value = node.number(None, minimum=0.001)
    return default if value is None else int(value * unit)


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
