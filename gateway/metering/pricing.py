"""Cost in micro-USD from a model's ``Price`` and the usage.

Prices are USD per 1M tokens (``input``/``output``), so one token costs ``price`` micro-USD;
``per_image`` is USD per image, ``per_minute`` USD per audio minute and ``per_second`` USD per
second of video (a video job's seconds are metered as media milliseconds, ``audio_ms``). The
total is rounded up to a whole micro-USD, so a request is never charged less than it cost.
"""

from __future__ import annotations

import math

from gateway.config.model import Price

MICROS_PER_USD = 1_000_000
MS_PER_MINUTE = 60_000


def cost_micros(
    price: Price | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    images: int = 0,
    audio_ms: int = 0,
) -> int:
    if price is None:
        return 0
    micros = prompt_tokens * price.input + completion_tokens * price.output
    if images:  # skipped when 0: adding 0.0 changes nothing
        micros += images * price.per_image * MICROS_PER_USD
    if audio_ms:  # added one by one, in the order they always were
        micros += audio_ms * price.per_minute * MICROS_PER_USD / MS_PER_MINUTE
        micros += audio_ms * price.per_second * MICROS_PER_USD / 1000
    return max(0, math.ceil(micros - 1e-9))


def micros_to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD
