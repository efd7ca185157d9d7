"""``asyncio.timeout`` as a plain (synchronous) context manager, for the per-attempt limit.

Every upstream attempt runs under a time limit. ``asyncio.timeout`` costs two coroutines (its
``__aenter__`` and ``__aexit__``) and a state machine per use; this does the same with one
timer and two plain calls: at the limit the task is cancelled, and on the way out a
cancellation that was ours (and nobody else's) becomes ``TimeoutError``, exactly as
``asyncio.timeout`` does it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class TimeLimit:
    """``with TimeLimit(seconds):`` inside a task: ``TimeoutError`` once ``seconds`` pass."""

    __slots__ = ("_delay", "_expired", "_handle", "_task")

    def __init__(self, seconds: float) -> None:
        self._delay = seconds
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None

    def __enter__(self) -> TimeLimit:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("TimeLimit should be used inside a task")
        self._task = task
        self._handle = asyncio.get_running_loop().call_later(self._delay, self._expire)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._expired:
            assert self._task is not None
            if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        assert self._task is not None
        self._task.cancel()
        self._expired = True
        self._handle = None
