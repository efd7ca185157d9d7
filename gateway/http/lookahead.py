"""The next item of an async iterator, taken at once when ready, so a relay knows its last chunk.

A relay that writes a chunk before asking for the next learns that it was the last only after
writing it: the end of the body then needs a write of its own. ``next_or_flush`` asks for the
next item first, and only if that would wait calls ``flush`` (write the chunk in hand) before
waiting: no byte is held back while the iterator waits, and a chunk whose successor (or end)
is already there goes out with it.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def next_or_flush(items: AsyncIterator[T], flush: Callable[[], None]) -> T:
    """``await anext(items)``, calling ``flush()`` first if it would wait; raises
    ``StopAsyncIteration`` at the end, like ``anext``."""
    step = items.__anext__().__await__()
    try:
        yielded = step.send(None)  # runs the iterator up to its first wait, or its answer
    except StopIteration as ready:
        return ready.value  # type: ignore[no-any-return]
    try:
        flush()
    except BaseException as exc:
        # the iterator, stopped mid-step, learns of the failure where it waits and cleans up
        # (as a cancellation would reach it); its end is the failure (or, if it absorbs it,
        # an item)
        try:
            yielded = step.throw(exc)
        except StopIteration as ready:
            return ready.value  # type: ignore[no-any-return]
    return await _resume(step, yielded)


@types.coroutine
def _resume(step: Generator[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """The rest of ``await``-ing ``step``, which has already run to its first wait (what
    ``yield from`` does, minus the first ``send``)."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # thrown in by the task: a cancellation
            try:
                yielded = step.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = step.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
