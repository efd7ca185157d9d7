"""Quota windows and their timestamps (pure)."""

import random
from datetime import UTC, datetime

from gateway.metering.windows import iso_utc


def reference(epoch: float, millis: bool) -> str:
    text = datetime.fromtimestamp(epoch, UTC).isoformat(
        timespec="milliseconds" if millis else "seconds"
    )
    return text.replace("+00:00", "Z")


def test_iso_utc_is_what_datetime_writes():
    rng = random.Random(25)
    edges = [0.0, 1.0, 86_399.9999996, 86_399.9995, 1_800_000_000.0, 1_767_225_599.9999999]
    edges += [1_800_000_000 + rng.random() * 1e4 for _ in range(20_000)]
    edges += [rng.uniform(0, 4e9) for _ in range(20_000)]
    edges += [float(rng.randrange(0, 4 * 10**9)) + k / 1000 for k in range(1000)]
    edges += [-1.5, -86_400.25]
    for epoch in edges:
        for millis in (False, True):
            assert iso_utc(epoch, millis=millis) == reference(epoch, millis), epoch
