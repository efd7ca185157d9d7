"""The admission of a reservation another worker made, rebuilt so this worker can settle it."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.metering import counters
from gateway.metering.types import Admission, MeterRequest
from gateway.metering.windows import windows_at


def adopted_admission(
    limits: counters.LimitCache,
    request: MeterRequest,
    started: float,
    lease: str,
    granted: Sequence[int],
) -> Admission:
    """The admission as made at ``started`` (a video job whose watcher died): its checks are
    worked out again; grants that no longer match them are dropped, so the settle adds the
    actual use."""
    checks = counters.reservation(limits.get(request), request, windows_at(started))
    held = tuple(granted) if len(granted) == len(checks) else ()
    return Admission(
        headers={},
        clamp_max_tokens=None,
        request=request,
        started=started,
        checks=checks,
        granted=held,
        lease=lease,
    )
