"""What the meter is asked to reserve for one request, worked out from its body and plan."""

from __future__ import annotations

from gateway.metering import MeterRequest
from gateway.metering.estimate import (
    estimate_prompt_tokens,
    prompt_tokens_most,
    stt_audio_ms,
    tts_audio_ms,
)
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
    generates = endpoint.generates_tokens
    requested = requested_max_tokens(incoming.fields) if generates else None
    n = incoming.fields.get("n", 1) if generates else 1  # range-checked by check_numbers
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    images = _images_requested(incoming) if plan.route == "image" else 0
    limits = principal.limits  # a run-time key's, when it has one (none: no check added)
    # positional, in the fields' order: a call with some sixteen keywords costs several times
    # one without (CPython matches each keyword to a parameter), once per request
    return MeterRequest(
        ctx.request_id,  # request_id
        principal.user,  # user
        principal.key_id,  # key_id
        principal.tier,  # tier
        plan.capability,  # capability
        principal.byok,  # byok
        estimate_prompt_tokens(incoming.fields),  # prompt_tokens_estimate
        requested or 0,  # max_output_tokens
        audio_ms,  # audio_ms_estimate
        plan.chain[0].price,  # price
        images,  # images_estimate
        generates,  # generates_tokens
        None if limits is None or limits.unlimited else limits,  # key_limits
        prompt_tokens_most(incoming.size),  # prompt_tokens_most
        choices,  # choices
        principal.levels,  # levels
    )


def _images_requested(incoming: Incoming) -> int:
    n = incoming.fields.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
