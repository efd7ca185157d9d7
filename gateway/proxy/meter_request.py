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


async def upload_ms(incoming: Incoming, plan: Plan) -> int:
    """The media milliseconds of an upload's audio, for a request that meters by them (not a
    video job's nor speech's): the one part of the metering that awaits (its header is read)."""
    if not incoming.files or plan.route == "video" or plan.route == "tts":
        return 0
    upload = incoming.files[0][1]
    return stt_audio_ms(
        await upload_header(upload),
        upload.size or 0,
        upload.filename or "",
        upload.content_type or "",
    )


def metered(
    ctx: RequestContext, incoming: Incoming, plan: Plan, principal: Principal, uploaded_ms: int = 0
) -> MeterRequest:
    """What the meter is to reserve; ``uploaded_ms``: ``upload_ms`` of a request with files (a
    JSON body has none: the pipeline awaits no coroutine for it)."""
    endpoint = ctx.endpoint
    audio_ms = uploaded_ms
    if plan.route == "video":  # a job's seconds, metered as media milliseconds
        audio_ms = video_seconds(incoming.fields.get("seconds")) * 1000
    elif plan.route == "tts":
        audio_ms = tts_audio_ms(len(str(incoming.fields.get("input", ""))))
    ctx.audio_ms = audio_ms
    generates = endpoint.generates_tokens
    requested = requested_max_tokens(incoming.fields) if generates else None
    n = incoming.fields.get("n", 1) if generates else 1  # range-checked by check_numbers
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    images = _images_requested(incoming) if plan.route == "image" else 0
    # positional, in the fields' order: a call with some sixteen keywords costs several times
    # one without (CPython matches each keyword to a parameter), once per request
    return MeterRequest(
        ctx.request_id,  # request_id
        principal.user,  # user
        principal.key_id,  # key_id
        principal.tier,  # tier
        plan.capability,  # capability
        principal.byok_key is not None,  # byok
        estimate_prompt_tokens(incoming.fields),  # prompt_tokens_estimate
        requested or 0,  # max_output_tokens
        audio_ms,  # audio_ms_estimate
        plan.chain[0].price,  # price
        images,  # images_estimate
        generates,  # generates_tokens
        principal.limits,  # key_limits: a run-time key's own, None when it sets none
        prompt_tokens_most(incoming.size),  # prompt_tokens_most
        choices,  # choices
        principal.levels,  # levels
    )


def _images_requested(incoming: Incoming) -> int:
    n = incoming.fields.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
