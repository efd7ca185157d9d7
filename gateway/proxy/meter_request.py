"""What the meter is asked to reserve for one request, worked out from its body and plan."""

from __future__ import annotations

from gateway.metering import MeterRequest
from gateway.metering.estimate import (
    estimate_prompt_tokens,
    prompt_tokens_most,
    stt_audio_ms,
    tts_audio_ms,
)
from gateway.metering.types import KeyLimits
from gateway.providers.video import video_seconds
from gateway.proxy.auth import Principal
from gateway.proxy.context import RequestContext
from gateway.proxy.incoming import Incoming, requested_max_tokens, upload_header
from gateway.proxy.routing import Plan


async def meter_request(
    ctx: RequestContext, incoming: Incoming, plan: Plan, principal: Principal
) -> MeterRequest:
    endpoint = ctx.endpoint
    audio_ms = 0
    if plan.route == "video":  # a job's seconds, metered as media milliseconds
        audio_ms = video_seconds(incoming.fields.get("seconds")) * 1000
    elif plan.route == "tts":
        audio_ms = tts_audio_ms(len(str(incoming.fields.get("input", ""))))
    elif incoming.files:
        upload = incoming.files[0][1]
        audio_ms = stt_audio_ms(
            await upload_header(upload),
            upload.size or 0,
            upload.filename or "",
            upload.content_type or "",
        )
    ctx.audio_ms = audio_ms
    requested = requested_max_tokens(incoming.fields) if endpoint.generates_tokens else None
    return MeterRequest(
        request_id=ctx.request_id,
        user=principal.user,
        key_id=principal.key_id,
        tier=principal.tier,
        capability=plan.capability,
        byok=principal.byok,
        prompt_tokens_estimate=estimate_prompt_tokens(incoming.fields),
        max_output_tokens=requested or 0,
        generates_tokens=endpoint.generates_tokens,
        audio_ms_estimate=audio_ms,
        price=plan.chain[0].price,
        images_estimate=_images_requested(incoming, plan),
        key_limits=_enforced(principal.limits),
        prompt_tokens_most=prompt_tokens_most(incoming.size),
        choices=_choices(incoming) if endpoint.generates_tokens else 1,
        levels=principal.levels,
    )


def _choices(incoming: Incoming) -> int:
    n = incoming.fields.get("n", 1)  # range-checked by check_numbers
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _enforced(limits: KeyLimits | None) -> KeyLimits | None:
    """A run-time key's limits, when it has one (a key without any adds no check)."""
    return None if limits is None or limits.unlimited else limits


def _images_requested(incoming: Incoming, plan: Plan) -> int:
    if plan.route != "image":
        return 0
    n = incoming.fields.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
