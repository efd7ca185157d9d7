"""The listener that writes one structured access-log line per finished request."""

from __future__ import annotations

import logging
from typing import Any

from gateway.control.id_keys import IdKeys
from gateway.proxy.context import RequestContext

ACCESS_LOG = "gateway.access"


class AccessLog:
    """No prompts or keys: the user is a keyed hash; bodies only when ``log_bodies`` (debugging)."""

    def __init__(self, *, log_bodies: bool = False, ids: IdKeys | None = None) -> None:
        self._log = logging.getLogger(ACCESS_LOG)
        self._log_bodies = log_bodies
        self._ids = ids or IdKeys()

    def started(self, ctx: RequestContext) -> None:
        pass

    def relaying(self, ctx: RequestContext) -> None:
        pass

    def finished(self, ctx: RequestContext) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields = log_fields(ctx, self._ids)
        if ctx.trace is not None:
            fields["trace_id"] = ctx.trace.trace_id
        if self._log_bodies and ctx.debug_body is not None:
            fields["body"] = ctx.debug_body
        self._log.info("request", extra={"fields": fields})


def log_fields(ctx: RequestContext, ids: IdKeys) -> dict[str, Any]:
    principal = ctx.principal
    usage = ctx.usage or {}
    return {
        "event": "request",
        "request_id": ctx.request_id,
        "user": ids.log_user(principal.user) if principal else None,
        "tier": principal.tier.name if principal else None,
        "endpoint": ctx.endpoint.name,
        "model": ctx.model.name if ctx.model else None,
        "provider": ctx.model.upstream.name if ctx.model else None,
        "status": ctx.status,
        "error": ctx.error.label if ctx.error else None,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": ctx.completion_tokens(),
        "latency_ms": round((ctx.ended - ctx.started) * 1000, 2),
        "fallback": ctx.fallback,
        "attempts": ctx.attempts,
        "replayed": sum(record.replayed for record in ctx.records),
        "byok": bool(principal and principal.byok),
    }
