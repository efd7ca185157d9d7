"""The exact response cache: which requests use it, their key, hits, fills and coalescing.

A request uses the cache when its tier's route has a TTL (tiers.yaml ``cache:``) or it asks
with ``x-gateway-cache: ttl=N`` on a route that allows it (N at most the route's ``ttl_s``, or
``cache.max_ttl_s`` on a route without one), or its route keeps answers only as a fallback
(``fallback: true``: filled, never looked up until every target failed);
``x-gateway-cache: no-store`` or ``cache-control: no-cache``/``no-store`` bypasses it (no
lookup, no fill). Without either the cost is one dictionary lookup and one header lookup.

The key is a digest of the resolved model, the endpoint and the body as sent upstream (its
``max_tokens`` after clamping) with the fields that cannot change the answer left out
(``IGNORED``) and top-level nulls (a field sent as null is the default), and of the user,
unless the route's cache is shared by the tier (a caller's own upstream key, BYOK, always
keeps its answers to itself). Entries live in the store (Redis, or
the memory store) for their TTL plus ``cache.stale_s``: past the TTL they answer no request,
but may still stand in when every target of the chain failed (``x-gateway-fallback: cache``).

Only whole 200 JSON answers and complete event streams are stored; errors, binary answers and
streams cut short never are. Concurrent identical misses in one process go upstream once when
the route coalesces: the others wait for the first one's answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config.model import CachePolicy, CacheSettings, Config
from gateway.errors import GatewayError, InvalidRequest
from gateway.proxy.cache.entry import Entry, assemble, cacheable_json, replay_events
from gateway.proxy.context import RequestContext
from gateway.proxy.reply import JSON, Reply
from gateway.proxy.streaming import SSERelay
from gateway.store.port import Store, StoreError

log = logging.getLogger("gateway")
HEADER = "x-gateway-cache"
CACHEABLE_ENDPOINTS = frozenset(
    {
        "chat.completions",
        "completions",
        "embeddings",
        "moderations",
        "rerank",
        "responses",
        "messages",
    }
)
# Body fields that cannot change the answer: how it is delivered, and who asks (the user is
# part of the key on its own). ``model`` is replaced by the resolved model.
IGNORED = frozenset({"model", "stream", "stream_options", "user", "metadata", "store"})
DEFAULT_POLICY = CachePolicy()
KEY_PREFIX = "gw:cache:"
FIELD = "v"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
FALLBACK_STATUSES = 500  # errors at or above this (and 429) may be answered from a stale entry
Upstream = Callable[[], Awaitable[Reply]]


@dataclass(frozen=True)
class CacheUse:
    """How one request uses the cache; ``ttl_s`` 0: bypassed, unless ``stand_in_only``
    (answers kept only to stand in for a failed chain, never served fresh)."""

    ttl_s: int
    policy: CachePolicy
    stand_in_only: bool = False

    @property
    def bypass(self) -> bool:
        return self.ttl_s <= 0 and not self.stand_in_only


BYPASS = CacheUse(0, DEFAULT_POLICY)


def cache_use(
    headers: Mapping[str, str],
    policies: Mapping[str, CachePolicy],
    route: str,
    endpoint: str,
    settings: CacheSettings,
) -> CacheUse | None:
    """None when the request does not touch the cache (the hot path: two lookups)."""
    policy = policies.get(route)
    asked = headers.get(HEADER)
    if policy is None and asked is None:
        return None
    if endpoint not in CACHEABLE_ENDPOINTS:
        return None
    policy = policy or DEFAULT_POLICY
    ttl = policy.ttl_s
    if asked is not None:
        requested = _requested_ttl(asked)
        if requested == 0:
            return BYPASS
        if requested is not None and policy.allow:
            # a caller may shorten the route's TTL, never stretch it (a shared entry is
            # everyone's); on an opt-in route (no ttl_s) the operator's max_ttl_s is the cap
            ttl = min(requested, policy.ttl_s or settings.max_ttl_s)
    if ttl <= 0 and not policy.fallback:
        return None
    control = headers.get("cache-control", "").lower()
    if "no-cache" in control or "no-store" in control:
        return BYPASS
    return CacheUse(ttl, policy) if ttl > 0 else CacheUse(0, policy, stand_in_only=True)


def _requested_ttl(value: str) -> int | None:
    """0 for ``no-store``, N for ``ttl=N``; a 400 for anything else."""
    for part in (p.strip().lower() for p in value.split(",")):
        if part == "no-store":
            return 0
        name, equals, number = part.partition("=")
        if name == "ttl" and equals and number.isdecimal() and 0 < int(number) < 10**9:
            return int(number)
    raise InvalidRequest(
        f"'{HEADER}' must be 'no-store' or 'ttl=SECONDS' (a positive integer).", param=HEADER
    )


def cache_key(ctx: RequestContext, use: CacheUse, body: Mapping[str, Any]) -> str:
    principal, plan = ctx.principal, ctx.plan
    assert principal is not None and plan is not None
    model = plan.chain[0]
    who = f"tier:{principal.tier.name}" if use.policy.shared and not principal.byok else None
    who = who or f"user:{principal.user}:{'byok' if principal.byok else 'own'}"
    kept = {k: v for k, v in body.items() if k not in IGNORED and v is not None}
    material = [1, ctx.endpoint.name, model.name, model.upstream_model, who, kept]
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return KEY_PREFIX + digest


class ResponseCache:
    """Lookups, fills and in-flight misses of one process; entries in ``store``."""

    def __init__(
        self, config: Config, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._settings = config.cache
        self._store = store
        self._clock = clock
        self._flights: dict[str, asyncio.Future[Entry | None]] = {}
        self._writes: set[asyncio.Task[None]] = set()

    async def serve(
        self,
        ctx: RequestContext,
        use: CacheUse,
        body: Mapping[str, Any],
        streams: bool,
        wants_usage: bool,
        upstream: Upstream,
    ) -> Reply:
        """The answer: from the cache when fresh, else from ``upstream()`` (filled in), else,
        when every target failed, from a stale entry."""
        if use.bypass:
            ctx.cache = "bypass"
            return await upstream()
        key = cache_key(ctx, use, body)
        if use.stand_in_only:
            return await self._standing_by(ctx, key, streams, wants_usage, upstream)
        coalesce = use.policy.coalesce
        # Taken before the read: a flight that lands and is written while the read is under
        # way is gone from the table when the read answers "none", yet holds the entry.
        earlier = self._flights.get(key) if coalesce else None
        entry = await self._read(key)
        if entry is not None and entry.fresh(self._clock()):
            return self._hit(ctx, entry, streams, wants_usage)
        flight = (self._flights.get(key) or earlier) if coalesce else None
        if flight is not None:
            landed = await self._follow(flight, ctx)
            if landed is not None and landed.fresh(self._clock()):
                return self._hit(ctx, landed, streams, wants_usage)
        ctx.cache = "miss"
        lead = coalesce and key not in self._flights
        if lead:
            self._flights[key] = asyncio.get_running_loop().create_future()
        try:
            reply = await upstream()
        except GatewayError as error:
            self._land(key, None, lead)
            if entry is not None and _stands_in(error, entry, self._clock(), self._settings):
                ctx.cache_fallback, ctx.error = True, None
                return self._hit(ctx, entry, streams, wants_usage)
            raise
        except BaseException:
            self._land(key, None, lead)
            raise
        return self._filling(ctx, key, use.ttl_s, reply, lead)

    async def _standing_by(
        self, ctx: RequestContext, key: str, streams: bool, wants_usage: bool, upstream: Upstream
    ) -> Reply:
        """A fallback-only route: no lookup before going upstream (no fresh hits, no added
        round trip); the answer is kept, and read back only when every target failed."""
        try:
            reply = await upstream()
        except GatewayError as error:
            entry = await self._read(key) if _upstreams_failed(error) else None
            if entry is not None and _stands_in(error, entry, self._clock(), self._settings):
                ctx.cache_fallback, ctx.error = True, None
                return self._hit(ctx, entry, streams, wants_usage)
            raise
        return self._filling(ctx, key, 0, reply, False)

    async def _read(self, key: str) -> Entry | None:
        try:
            raw = await self._store.get_document(key, FIELD)
        except StoreError:
            return None  # the cache is an optimisation: a store outage is a miss
        return Entry.decode(raw) if raw is not None else None

    async def _follow(
        self, flight: asyncio.Future[Entry | None], ctx: RequestContext
    ) -> Entry | None:
        """The leader's entry, or None when it has none (or takes longer than its model's
        first-byte and idle timeouts together)."""
        assert ctx.plan is not None
        upstream = ctx.plan.chain[0].upstream
        wait = upstream.first_byte_timeout_s + upstream.idle_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(flight), wait)
        except TimeoutError:
            return None

    def _hit(self, ctx: RequestContext, entry: Entry, streams: bool, wants_usage: bool) -> Reply:
        ctx.cache = "hit"
        assert ctx.plan is not None
        ctx.model = self._config.models.get(entry.model, ctx.plan.chain[0])
        ctx.usage = {"prompt_tokens": 0, "completion_tokens": 0}  # nothing went upstream
        ctx.status = 200
        headers = ctx.indicator()
        if streams and (events := replay_events(entry.body, wants_usage)) is not None:
            return Reply(200, {**headers, **SSE_HEADERS}, events, "text/event-stream")
        return Reply(200, headers, entry.body, JSON)

    def _filling(
        self, ctx: RequestContext, key: str, ttl_s: int, reply: Reply, lead: bool
    ) -> Reply:
        """``reply`` as it goes to the client, stored once it proved complete."""
        model = ctx.model.name if ctx.model is not None else ""
        if reply.status == 200 and isinstance(reply.body, bytes):  # a JSON answer read whole
            stored = cacheable_json(reply.body)
            entry = Entry(self._clock(), ttl_s, model, stored) if stored else None
            self._land(key, entry, lead)
            return reply
        if reply.status == 200 and isinstance(reply.body, SSERelay):
            tapped = self._tap(key, ttl_s, model, reply.body, lead)
            return reply._replace(body=tapped)
        self._land(key, None, lead)
        return reply

    async def _tap(
        self, key: str, ttl_s: int, model: str, relay: SSERelay, lead: bool
    ) -> AsyncIterator[bytes]:
        """Relay the stream, keeping a copy of what the client got (up to the entry limit)."""
        kept: list[bytes] = []
        size, limit = 0, self._settings.max_entry_bytes
        chunks = aiter(relay)
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size <= limit:
                    kept.append(chunk)
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            result = relay.result
            entry = None
            # [DONE] relayed is the whole answer, kept above before it was yielded; the client
            # may hang up then, before the upstream's body ends and this loop would
            if size <= limit and result.completed and result.error is None:
                stored = assemble(b"".join(kept), result.usage)
                entry = Entry(self._clock(), ttl_s, model, stored) if stored else None
            self._land(key, entry, lead)

    def _land(self, key: str, entry: Entry | None, lead: bool) -> None:
        """End the key's flight (when this request leads it) and store ``entry``. A landed
        flight with an entry stays until the entry is written, so that requests arriving in
        between are answered from it rather than going upstream."""
        flight = self._flights.get(key) if lead else None
        if flight is not None and not flight.done():
            flight.set_result(entry)
        storable = entry is not None and len(entry.body) <= self._settings.max_entry_bytes
        if entry is None or not storable:
            if flight is not None:
                del self._flights[key]
            return
        physical = entry.ttl_s + self._settings.stale_s
        task = asyncio.get_running_loop().create_task(self._write(key, entry, physical))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        if flight is not None:
            task.add_done_callback(lambda _: self._end_flight(key, flight))

    def _end_flight(self, key: str, flight: asyncio.Future[Entry | None]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _write(self, key: str, entry: Entry, ttl_s: int) -> None:
        try:
            await self._store.put_document(key, FIELD, entry.encode(), ttl_s)
        except StoreError:
            log.debug("response cache: could not store an entry")


def _stands_in(error: GatewayError, entry: Entry, now: float, settings: CacheSettings) -> bool:
    """Whether a stale entry may answer instead of ``error``: the upstreams failed (not the
    client's own request), and the entry is within the stale limit."""
    if not _upstreams_failed(error):
        return False
    return now < entry.stored_at + entry.ttl_s + settings.stale_s


def _upstreams_failed(error: GatewayError) -> bool:
    return error.status >= FALLBACK_STATUSES or error.status == 429
