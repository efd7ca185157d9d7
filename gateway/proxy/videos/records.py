"""What a video job's record shows its owner, and what it keeps of the job's reservation."""

from __future__ import annotations

from typing import Any

from gateway.metering import level_limits
from gateway.metering.types import Admission

PUBLIC_FIELDS = (
    "id", "model", "status", "progress", "seconds", "size", "prompt", "created_at",
    "completed_at", "expires_at",
)  # fmt: skip


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A job in OpenAI's ``video`` object shape (no owner, provider ids or URLs)."""
    out = {field: record.get(field) for field in PUBLIC_FIELDS}
    out["object"] = "video"
    out["remixed_from_video_id"] = None
    error = record.get("error")
    out["error"] = {"code": "video_generation_failed", "message": error} if error else None
    return out


def reservation(admission: Admission) -> dict[str, Any]:
    """What another worker needs to settle the job's reservation."""
    request = admission.request
    return {
        "started": admission.started,
        "lease": admission.lease,
        "granted": list(admission.granted),
        "key_id": request.key_id,
        "tier": request.tier.name,
        "capability": request.capability,
        "byok": request.byok,
        "prompt_tokens_estimate": request.prompt_tokens_estimate,
        "audio_ms_estimate": request.audio_ms_estimate,
        "levels": level_limits.plain(request.levels),  # the key's organization and team
    }
