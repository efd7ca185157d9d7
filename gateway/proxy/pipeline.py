"""The path of one proxied request: auth → body → route → quota → attempts → answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.requests import Request

from gateway.config.model import Config
from gateway.errors import BudgetExceeded, GatewayError
from gateway.metering import Admission, Meter, MeterRequest
from gateway.proxy import chat_fields
from gateway.proxy.answer import Answers
from gateway.proxy.attempt_outcome import AttemptFailed
from gateway.proxy.attempts import Attempter
from gateway.proxy.auth import Authenticator, Principal
from gateway.proxy.cache.exact import CacheUse, ResponseCache, cache_use
from gateway.proxy.context import RequestContext, RequestIds
from gateway.proxy.credentials import Credentials
from gateway.proxy.deployments import ChainSecrets
from gateway.proxy.downgrade import clamped_by_quota, downgraded
from gateway.proxy.flag_gate import FlagGate
from gateway.proxy.incoming import Incoming, json_for_upstream, read_incoming
from gateway.proxy.listeners import Listeners
from gateway.proxy.meter_request import metered, upload_ms
from gateway.proxy.reply import Reply, error_reply
from gateway.proxy.rollout import Rollout
from gateway.proxy.routing import (
    CHAT,
    VIDEOS,
    Endpoint,
    own_key_required,
    resolve,
    within_allow_list,
)
from gateway.proxy.source_indicators import SourceIndicators
from gateway.proxy.tags import request_tags
from gateway.proxy.trace_hooks import Tracer
from gateway.proxy.videos.jobs import VideoJobs

log = logging.getLogger("gateway")
# A protocol bridge's request translation (proxy/bridge.py): the client's body, read and
# authenticated, → the chat completions body that runs through the pipeline.
Inbound = Callable[[Incoming, Principal], Awaitable[Incoming]]


class Pipeline:
    """Turns one request for a known endpoint into a ``Reply``; never raises for the client's
    or an upstream's faults. ``listeners`` hear of every request's start and end: a reply read
    whole carries its end as ``Reply.after``, which whoever sends it calls after the last byte."""

    def __init__(
        self,
        config: Config,
        keyring: Authenticator,
        attempter: Attempter,
        meter: Meter,
        listeners: Listeners,
        *,
        log_bodies: bool = False,
        videos: VideoJobs | None = None,
        rollout: Rollout | None = None,
        credentials: Credentials | None = None,
        flags: FlagGate | None = None,
        cache: ResponseCache | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._config = config
        self._keyring = keyring
        self._attempter = attempter
        self._meter = meter
        self._listeners = listeners
        self._log_bodies = log_bodies
        self._videos = videos
        self._rollout = rollout or Rollout()
        self._credentials = credentials or Credentials()  # stored system and user keys
        self._flags = flags  # the plan's feature flags (proxy/flag_gate.py)
        self._cache = cache
        self._tracer = tracer  # None: tracing off, no call made
        self._request_ids = RequestIds()
        indicators = SourceIndicators(config)  # per (tier, model), once per config
        self._answers = Answers(config.settings, listeners.relaying, self._end, indicators)

    async def handle(
        self, request: Request, endpoint: Endpoint, inbound: Inbound | None = None
    ) -> Reply:
        ctx = RequestContext.begin(request.headers.get("x-request-id"), endpoint, self._request_ids)
        if self._tracer is not None:
            ctx.trace = self._tracer.begin(request.headers, ctx)
        self._listeners.started(ctx)
        # checked, metered, then forwarded, each awaited from here: a coroutine that awaited the
        # next would be one more layer that every wait on Redis or the upstream crosses
        try:
            incoming, asked, use = await self._admit(request, ctx, inbound)
            self._listeners.drain_after_next_turn()  # the ends of earlier requests: while it waits
            try:
                admission = ctx.admission = await self._meter.admit(asked)
                ctx.downgraded = clamped_by_quota(admission)
            except BudgetExceeded as exceeded:
                admission = await self._downgraded(ctx, asked, exceeded)
            body, streams, wants_usage = json_for_upstream(
                incoming, ctx.endpoint, admission.clamp_max_tokens
            )
            if use is None:
                reply = await self._forward(ctx, incoming, body, streams, wants_usage)
            else:
                reply = await self._cached(ctx, use, incoming, body, streams, wants_usage)
        except GatewayError as error:
            ctx.fail(error)
            reply = error_reply(error, ctx.indicator())
        except Exception:
            log.exception("unexpected error serving %s", ctx.request_id)
            internal = GatewayError("The gateway hit an internal error.", code="internal_error")
            ctx.fail(internal)
            reply = error_reply(internal, ctx.indicator())
        except BaseException:  # cancelled: no reply will be sent
            self._end(ctx)
            raise
        status, headers, body_out, media_type, after = reply
        # the gateway's own time (``RequestContext.overhead``) as its answer's headers go out:
        # a relay's first bytes follow at once, as its first chunk is already in hand
        overhead = ctx.overhead_s = ctx.overhead(time.perf_counter())
        if not isinstance(headers, dict):
            headers = dict(headers)
        headers[OVERHEAD_HEADER] = f"{overhead * 1000:.3f}"
        if ctx.dropped_fields:
            headers = chat_fields.with_dropped(headers, ctx.dropped_fields)
        if not isinstance(body_out, bytes):  # the relay ends the request after its last byte
            if headers is reply.headers:  # its own dict, the header written in: as it is
                return reply
            return Reply(status, headers, body_out, media_type, after)
        return Reply(status, headers, body_out, media_type, partial(self._end, ctx))

    def drain_listeners(self) -> None:
        """Every finished request heard by all its listeners (``Listeners.drain``)."""
        self._listeners.drain()

    def _end(self, ctx: RequestContext) -> None:
        ctx.ended = time.perf_counter()
        if ctx.verdict_pending and ctx.model is not None:
            self._attempter.answer_ended(ctx.model, ctx.upstream_failure)
        self._listeners.finished(ctx)

    async def _admit(
        self, request: Request, ctx: RequestContext, inbound: Inbound | None
    ) -> tuple[Incoming, MeterRequest, CacheUse | None]:
        """Auth → body → route: the request, what the meter is to reserve for it, and how the
        response cache applies (None: not)."""
        endpoint = ctx.endpoint
        principal = ctx.principal = self._keyring.authenticate(request.headers, request.scope)
        incoming = await read_incoming(request, endpoint, self._config.settings.max_body_bytes)
        if inbound is not None:
            incoming = await inbound(incoming, principal)
        if self._log_bodies:
            ctx.debug_body = incoming.fields
        ctx.tags = request_tags(request.headers, incoming.fields, endpoint.name)
        requested = ctx.requested_model = incoming.model
        if principal.models is not None:  # a run-time key's allow-list
            principal.allow_model(requested)
        plan = resolve(self._config, principal.tier, endpoint, requested, incoming.fields)
        # a tier with models behind the Anthropic adapter (or a model a caller's own key
        # unlocks): the fields the adapter cannot carry
        if endpoint is CHAT and (principal.tier.adapted or plan.byok_only):
            incoming, ctx.dropped_fields = chat_fields.settle(incoming, principal.tier, plan)
        plan, ctx.rollout = self._rollout.apply(principal.tier, plan, principal.user)
        if self._flags is not None:
            plan, ctx.indicators = self._flags.apply(principal, plan)
        if principal.models is not None:  # a key's allow-list holds for the fallbacks too
            plan = within_allow_list(plan, principal.models, requested)
        ctx.plan = plan
        if endpoint is VIDEOS and self._videos is not None:
            await self._videos.check_room(principal.user)
        use = None
        if self._cache is not None:  # caching off: one dict and one header lookup
            policies, settings = principal.tier.cache, self._config.cache
            use = cache_use(request.headers, policies, plan.route, endpoint.name, settings)
        principal = ctx.principal = self._credentials.principal_for(principal, plan)
        if plan.byok_only and principal.byok_key is None:
            raise own_key_required(plan, principal.tier)
        uploaded = await upload_ms(incoming, plan) if incoming.files else 0
        asked = ctx.meter_request = metered(ctx, incoming, plan, principal, uploaded)
        return incoming, asked, use

    async def _downgraded(
        self, ctx: RequestContext, asked: MeterRequest, exceeded: BudgetExceeded
    ) -> Admission:
        """After the budget refused the request: the admission of a cheaper model or of fewer
        tokens (``downgrade.py``), its plan the request's; else ``exceeded`` raised."""
        assert ctx.plan is not None
        found = await downgraded(self._meter, asked, ctx.plan)
        if found is None:
            raise exceeded
        admission, ctx.plan = found
        ctx.admission, ctx.downgraded = admission, True
        return admission

    async def _cached(
        self,
        ctx: RequestContext,
        use: CacheUse,
        incoming: Incoming,
        body: dict[str, Any],
        streams: bool,
        wants_usage: bool,
    ) -> Reply:
        """The answer through the response cache: a hit, or ``_forward``'s answer stored."""
        assert self._cache is not None
        forward = partial(self._forward, ctx, incoming, body, streams, wants_usage)
        return await self._cache.serve(ctx, use, body, streams, wants_usage, forward)

    async def _forward(
        self,
        ctx: RequestContext,
        incoming: Incoming,
        body: dict[str, Any],
        streams: bool,
        wants_usage: bool,
    ) -> Reply:
        """Run the attempt chain and shape its answer."""
        endpoint, plan, principal = ctx.endpoint, ctx.plan, ctx.principal
        assert plan is not None and principal is not None
        ctx.upstream_started = time.perf_counter()
        # the ends of earlier requests heard while this one waits: its request is written
        # before the loop's next turn
        self._listeners.drain_soon()
        try:
            opened = await self._attempter.run(
                plan.chain,
                self._credentials.builder(ctx, incoming, body, principal),
                buffered=not (streams or endpoint.binary_response),
                secrets=ChainSecrets(principal.byok_key, plan.chain),
                own_credentials=principal.byok,
                trace=ctx.trace,
            )
        except AttemptFailed as failed:
            ctx.records = failed.records
            ctx.upstream_ended = time.perf_counter()
            raise failed.error from None
        ctx.upstream_opened = time.perf_counter()
        ctx.model, ctx.records = opened.model, opened.records
        ctx.verdict_pending = opened.rest is not None
        ctx.breaker_skipped = opened.breaker_skipped
        if endpoint is VIDEOS and self._videos is not None:
            ctx.upstream_ended = time.perf_counter()
            return await self._videos.submitted(ctx, opened, incoming.fields)
        reply = await self._answers.reply(ctx, opened, wants_usage)
        if ctx.trace is not None and not isinstance(reply.body, bytes):
            return reply._replace(body=ctx.trace.relay(reply.body))
        return reply


OVERHEAD_HEADER = "x-gateway-overhead-ms"
