"""A batch line through the gateway's own pipeline, as the batch's owner.

The runner hands each line to a second ``Pipeline`` of the same parts (routing, fallback,
metering, listeners) whose authenticator is ``OwnerKeys``: it reads two headers that only this
module sets, on a request built in process, never on one from the network. The owner's key is
looked up again before every line: while it is revoked or expired, or (a team key) its team
no longer takes it, the batch waits (``LineOutcome.key_refused``). ``/v1/responses`` lines go
through the Responses bridge, as interactive ones do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Message

from gateway.batches.jsonl import BatchLine
from gateway.batches.records import BatchRecord
from gateway.batches.runner import PAUSE_DEFAULT_S, LineOutcome
from gateway.errors import Forbidden, Unauthorized
from gateway.proxy.auth import KeyRing, Principal
from gateway.proxy.bridge import Bridge
from gateway.proxy.pipeline import Pipeline
from gateway.proxy.routing import CHAT, EMBEDDINGS, Endpoint

OWNER_HEADER = "x-gateway-batch-owner"
BATCH_HEADER = "x-gateway-batch-id"
ENDPOINTS: dict[str, Endpoint] = {"/v1/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS}
RESPONSES_PATH = "/v1/responses"
QUOTA_CODES = (b'"quota_exceeded"', b'"budget_exceeded"')
# what ``KeyRing.by_digest`` raises for a key that may not be used now: revoked or expired
# (401), or a team key whose team, organization or membership is gone (403)
KEY_REFUSED = (Unauthorized, Forbidden)


class OwnerKeys:
    """The batch pipeline's authenticator: the owner's key by its digest."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    def authenticate(
        self, headers: Mapping[str, str], scope: Mapping[str, Any] | None = None
    ) -> Principal:
        principal = self._keyring.by_digest(headers[OWNER_HEADER])
        return dataclasses.replace(principal, batch=headers[BATCH_HEADER])

    def check(self, record: BatchRecord) -> None:
        """401 / 403 while the key that created ``record`` may not be used."""
        self._keyring.by_digest(record.key_digest)

    def tier_of(self, record: BatchRecord) -> tuple[str, int | None]:
        """The runner's ``tier_of``: the owner's key's tier and its batch lines limit."""
        try:
            tier = self._keyring.by_digest(record.key_digest).tier
        except KEY_REFUSED:
            return "", None  # its lines wait for the key (``PipelineLines``)
        return tier.name, tier.batch_concurrency


class PipelineLines:
    """The runner's ``execute``: one line as one in-process request."""

    def __init__(
        self,
        pipeline_of: Callable[[], Pipeline],
        owners: OwnerKeys,
        responses: Bridge | None = None,
    ) -> None:
        self._pipeline_of = pipeline_of
        self._owners = owners
        self._responses = responses  # /v1/responses lines (None: not served)

    async def __call__(self, record: BatchRecord, line: BatchLine) -> LineOutcome:
        body = orjson.dumps(line.body)
        request_id = f"batch_req_{record.id.removeprefix('batch_')}_{line.number}"
        try:
            self._owners.check(record)
        except KEY_REFUSED as refused:
            error = orjson.dumps(refused.body())
            return LineOutcome(refused.status, error, request_id, key_refused=True)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (OWNER_HEADER.encode(), record.key_digest.encode()),
            (BATCH_HEADER.encode(), record.id.encode()),
        ]
        scope = {
            "type": "http", "method": "POST", "path": record.endpoint, "raw_path": b"",
            "query_string": b"", "headers": headers, "http_version": "1.1", "scheme": "http",
            "server": ("batch", 0), "client": ("127.0.0.1", 0), "root_path": "",
        }  # fmt: skip
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        pipeline, request = self._pipeline_of(), Request(scope, receive)
        if record.endpoint == RESPONSES_PATH and self._responses is not None:
            reply = await self._responses.handle(pipeline, request)
        else:
            reply = await pipeline.handle(request, ENDPOINTS[record.endpoint])
        status, reply_headers, content = reply.status, reply.headers, reply.body
        if not isinstance(content, bytes):  # a relayed answer (not asked for): read it whole
            content = b"".join([chunk async for chunk in content])
        if reply.after is not None:  # the line's billing, log and metrics, as after a reply
            reply.after()
        quota = status == 429 and any(code in content for code in QUOTA_CODES)
        retry_after = dict(reply_headers).get("retry-after", "")
        return LineOutcome(
            status,
            content,
            request_id,
            quota_refused=quota,
            retry_after_s=float(retry_after) if retry_after.isdecimal() else PAUSE_DEFAULT_S,
        )
