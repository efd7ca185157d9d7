"""``asyncio.timeout`` as a plain (synchronous) context manager, for the per-attempt limit.

Every upstream attempt runs under a time limit. ``asyncio.timeout`` costs two coroutines (its
``__aenter__`` and ``__aexit__``) and a state machine per use; this does the same with two
plain calls: at the limit the task is cancelled, and on the way out a cancellation that was
ours (and nobody else's) becomes ``TimeoutError``, exactly as ``asyncio.timeout`` does it.

The limits of one event loop share one timer (``_Watch``), armed at the earliest deadline: a
timer per limit, made and cancelled per attempt, was most of a limit's cost (uvloop makes a
libuv timer for each). Nearly every limit ends long before its deadline and deadlines mostly
come in the order the limits start, so the shared timer is rarely moved.
"""

from __future__ import annotations

import asyncio
import heapq
from itertools import count
from types import TracebackType

# Ended limits left in a watch's heap before it is rebuilt from the running ones
_STALE_SLACK = 64


class TimeLimit:
    """``with TimeLimit(seconds):`` inside a task: ``TimeoutError`` once ``seconds`` pass."""

    __slots__ = ("_delay", "_done", "_expired", "_task", "_watch")

    def __init__(self, seconds: float) -> None:
        self._delay = seconds
        self._expired = False
        self._done = False
        self._task: asyncio.Task[object] | None = None
        self._watch: _Watch | None = None

    def __enter__(self) -> TimeLimit:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("TimeLimit should be used inside a task")
        self._task = task
        watch = _latest
        if watch is None or watch.loop is not loop:
            watch = _watch_of(loop)
        self._watch = watch
        # ``watch.add`` inlined: once per attempt
        deadline = loop.time() + self._delay
        watch.running += 1
        heapq.heappush(watch.heap, (deadline, next(watch.order), self))
        if watch.timer is None or deadline < watch.timer_at:
            watch.arm(deadline)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if not self._done:
            self._done = True
            watch = self._watch
            assert watch is not None
            # ``watch.ended`` inlined: once per attempt
            watch.running -= 1
            if len(watch.heap) > 2 * watch.running + _STALE_SLACK:
                watch.prune()
        if self._expired:
            assert task is not None
            if task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _expire(self) -> None:
        """The deadline passed while the limit runs (called by its watch, which counted it
        ended)."""
        self._done = True
        assert self._task is not None
        self._task.cancel()
        self._expired = True


class _Watch:
    """One loop's running limits in a heap by deadline, and one timer at the earliest.

    An ended limit stays in the heap (marked done) until it comes up or the heap is rebuilt,
    which happens once it holds more than ``_STALE_SLACK`` more ended limits than running
    ones."""

    __slots__ = ("heap", "loop", "order", "running", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, TimeLimit]] = []
        self.order = count()  # ties on a deadline: the limit started first expires first
        self.running = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def prune(self) -> None:
        """The heap rebuilt from the running limits (a limit's ``__exit__`` calls this once
        the ended ones outnumber them by more than ``_STALE_SLACK``)."""
        heap = self.heap
        heap[:] = [entry for entry in heap if not entry[2]._done]
        heapq.heapify(heap)

    def arm(self, deadline: float) -> None:
        """The timer moved to ``deadline`` (a limit's ``__enter__`` calls this for a deadline
        earlier than the timer's)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        """Expire the limits whose deadline came, then wait for the next one."""
        self.timer = None
        due = max(self.timer_at, self.loop.time())
        heap = self.heap
        while heap and heap[0][0] <= due:
            limit = heapq.heappop(heap)[2]
            if not limit._done:
                self.running -= 1
                limit._expire()
        while heap and heap[0][2]._done:
            heapq.heappop(heap)
        if heap:
            self.arm(heap[0][0])


# The watch of the loop that used one last (one loop per process when serving); another
# loop's limits get a watch of their own, each kept by its timer and its limits
_latest: _Watch | None = None


def _watch_of(loop: asyncio.AbstractEventLoop) -> _Watch:
    global _latest
    _latest = _Watch(loop)
    return _latest
