"""Stored Responses API responses, under their owner, kept for a TTL.

For ``previous_response_id`` and the ``GET``/``DELETE /v1/responses/{id}`` endpoints. One
hash per response (field ``r``) under the owner's hash tag, expiring ``ttl_s`` after it was
written; a deleted one is an empty value until then, so another user's id and a deleted id
both read as absent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.store import keys
from gateway.store.port import Store, StoreError

FIELD = "r"
TOMBSTONE_TTL_S = 60  # a deleted response's empty value, kept briefly
# told each outcome: stored, store_failed (the answer went out unkept), found, missing, read_failed
Observe = Callable[[str], None]


def _unobserved(event: str) -> None:
    pass


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the Response object as answered
    input_items: list[dict[str, Any]]  # this request's input items
    history: list[dict[str, Any]]  # the items before them (the conversation it continued)

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """What a request naming this one as ``previous_response_id`` continues."""
        return [*self.history, *self.input_items, *self.response.get("output", ())]


class ResponseStore:
    def __init__(self, store: Store, ttl_s: int, observe: Observe = _unobserved) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._observe = observe

    async def put(self, owner: str, stored: StoredResponse) -> None:
        document = {
            "response": stored.response,
            "input_items": stored.input_items,
            "history": stored.history,
        }
        key = keys.user_response(owner, str(stored.response["id"]))
        try:
            await self._store.put_document(key, FIELD, orjson.dumps(document), self._ttl_s)
        except StoreError:
            self._observe("store_failed")
            raise
        self._observe("stored")

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        try:
            raw = await self._store.get_document(keys.user_response(owner, response_id), FIELD)
        except StoreError:
            self._observe("read_failed")
            raise
        self._observe("found" if raw else "missing")
        if not raw:
            return None
        document = orjson.loads(raw)
        return StoredResponse(document["response"], document["input_items"], document["history"])

    async def delete(self, owner: str, response_id: str) -> bool:
        """True when there was a response to delete."""
        if await self.get(owner, response_id) is None:
            return False
        key = keys.user_response(owner, response_id)
        await self._store.put_document(key, FIELD, b"", TOMBSTONE_TTL_S)
        return True
