"""What a replica's batch runner reports as it works, for whoever counts it (the metrics)."""

from __future__ import annotations

from typing import Protocol


class BatchObserver(Protocol):
    def line_answered(self, endpoint: str, outcome: str) -> None:
        """A line got its result: ``completed`` (2xx), ``failed`` (any other answer) or
        ``interrupted`` (its replica died while it ran; it was not sent again) or
        ``expired`` (the batch's window closed before it ran)."""
        ...

    def batch_ended(self, endpoint: str, status: str) -> None:
        """A batch is final: ``completed``, ``failed``, ``expired`` or ``cancelled``."""
        ...

    def looked(self, waiting: int, in_flight: int, paused: int) -> None:
        """After each look at the running batches: their lines no replica has begun, this
        replica's lines in flight, and the batches paused (a quota, an invalid key)."""
        ...


class Unobserved:
    """Reports to no one (a runner the app has not given an observer)."""

    def line_answered(self, endpoint: str, outcome: str) -> None:
        pass

    def batch_ended(self, endpoint: str, status: str) -> None:
        pass

    def looked(self, waiting: int, in_flight: int, paused: int) -> None:
        pass
