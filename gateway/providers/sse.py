"""SSE framing: upstream bytes cut into runs of complete events, each byte scanned once."""

from __future__ import annotations


class EventTooLarge(Exception):
    """An upstream event grew past the limit without ending."""


class EventSplitter:
    """Feed it chunks as they arrive; it hands back the complete events among them (LF framing,
    each ending in a blank line) and keeps the incomplete rest. CRLF and CR framing become LF,
    a CR at a chunk's end is held (it may be half of a CRLF). An event that grows past
    ``max_event_bytes`` without ending raises ``EventTooLarge``."""

    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._carry = bytearray()  # an incomplete event
        self._held_cr = False
        self.clean = True  # nothing held: a chunk of whole LF-framed events is all complete

    def feed(self, chunk: bytes) -> bytes:
        # partition, not find: find parses its optional arguments from a tuple on every call
        if self.clean and chunk[-2:] == b"\n\n" and not chunk.partition(b"\r")[1]:
            return chunk  # the usual chunk: whole events, nothing held before or after
        data = self._feed(chunk)
        self.clean = not self._carry and not self._held_cr
        return data

    def _feed(self, chunk: bytes) -> bytes:
        data = b"\r" + chunk if self._held_cr else chunk
        self._held_cr = False
        if data.find(b"\r") >= 0:  # not ``in``: see proxy/streaming.py
            if data.endswith(b"\r"):
                data, self._held_cr = data[:-1], True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        carry = self._carry
        end = data.rfind(b"\n\n")
        if end < 0 and not (carry.endswith(b"\n") and data.startswith(b"\n")):
            carry += data
            if len(carry) > self._max:
                raise EventTooLarge
            return b""
        if carry:
            data = bytes(carry) + data
            end = data.rfind(b"\n\n")
            carry.clear()
        if end + 2 < len(data):
            carry += data[end + 2 :]
        return data[: end + 2]

    def pending(self) -> bool:
        """Something that is not blank is still held (an event the upstream did not end)."""
        return bool(self._carry.strip()) or self._held_cr
