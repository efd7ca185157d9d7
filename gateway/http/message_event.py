"""The request cycle's message event: asyncio's ``Event``, made without a call per request.

Every request's cycle has one (uvicorn's ``message_event``: set when a body part, the body's end
or a disconnect comes, cleared when ``receive`` takes it), and ``Event()`` runs its
``__init__`` and allocates a deque of waiters. Most requests never wait on it (the body is in by
the time it is read), so the flag and the waiters are read from the class until used: the
waiters' deque is made by the first wait.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Literal


class MessageEvent(asyncio.Event):
    _value = False
    _waiters: Any = ()  # ``set`` runs through none; ``wait`` makes the deque it appends to

    def __init__(self) -> None:  # (replaced below by ``object.__init__``: no call made)
        pass

    async def wait(self) -> Literal[True]:
        if self._value:
            return True
        if type(self._waiters) is tuple:
            self._waiters = collections.deque()
        return await super().wait()


MessageEvent.__init__ = object.__init__  # type: ignore[method-assign]
