"""Video jobs: a submitted job's record, its polling, its metering at the end, and its bytes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import httpx
import orjson

from gateway.config.model import Config, Model
from gateway.errors import GatewayError, NotFound, UpstreamError
from gateway.metering import Meter, Outcome
from gateway.metering.job_store import JobStore
from gateway.metering.types import Admission
from gateway.providers import video
from gateway.providers.bodies import read_body
from gateway.providers.transport import Transport
from gateway.proxy.attempts import Opened
from gateway.proxy.auth import Principal
from gateway.proxy.context import RequestContext
from gateway.proxy.reply import Reply

log = logging.getLogger("gateway")
JOB_TTL_S = 7 * 86400
POLL_INTERVAL_S = 5.0
MAX_STATUS_BYTES = 1024 * 1024


class VideoJobs:
    """Each submitted job is watched by the worker that submitted it until it ends, then
    settled with the meter: its seconds charged, or its reservation given back on failure."""

    def __init__(
        self,
        config: Config,
        transport: Transport,
        meter: Meter,
        jobs: JobStore,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        ttl_s: int = JOB_TTL_S,
        clock: Any = time.time,
    ) -> None:
        self._config = config
        self._transport = transport
        self._meter = meter
        self._jobs = jobs
        self.poll_interval_s = poll_interval_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._watchers: set[asyncio.Task[None]] = set()

    async def submitted(self, ctx: RequestContext, opened: Opened, fields: dict[str, Any]) -> Reply:
        """Record the job the upstream accepted and start watching it; the request's
        reservation now belongs to the job (settled when it ends, not now)."""
        assert ctx.principal is not None
        model = opened.model
        upstream_id = video.submitted_id(opened.first_chunk)
        if upstream_id is None:
            raise UpstreamError("The video upstream did not answer with a job id.")
        now = self._clock()
        record: dict[str, Any] = {
            "id": "video_" + secrets.token_hex(12),
            "owner": ctx.principal.user,
            "model": model.name,
            "provider": model.upstream.name,
            "upstream_id": upstream_id,
            "status": "queued",
            "progress": 0,
            "seconds": str(video.video_seconds(fields.get("seconds"))),
            "size": str(fields.get("size") or ""),
            "prompt": str(fields.get("prompt") or ""),
            "created_at": int(now),
            "completed_at": None,
            "expires_at": int(now) + self._ttl_s,
            "error": None,
            "request_id": ctx.request_id,
            "attempts": ctx.attempts,
        }
        await self._jobs.put(record["owner"], record["id"], record, self._ttl_s)
        if ctx.admission is not None:
            admission, ctx.admission = ctx.admission, None  # the listener must not settle it
            task = asyncio.get_running_loop().create_task(self._watch(record, admission, now))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
        ctx.status = 200
        return Reply(200, ctx.indicator(), _json(public(record)))

    async def get(self, principal: Principal, job_id: str) -> dict[str, Any]:
        """The caller's own job, refreshed from the upstream while it runs; 404 otherwise."""
        record = await self._jobs.get(principal.user, job_id)
        if record is None:
            raise NotFound(f"No video job '{job_id}'.", code="video_not_found")
        if record["status"] not in video.TERMINAL:
            record = await self._refresh(record)
        return record

    async def list(self, principal: Principal) -> list[dict[str, Any]]:
        jobs = await self._jobs.list(principal.user)
        return sorted(jobs, key=lambda job: job["created_at"], reverse=True)

    async def content(
        self, principal: Principal, job_id: str
    ) -> tuple[str | None, httpx.Response | None]:
        """(a URL to redirect to, or the upstream's open answer with the bytes)."""
        record = await self.get(principal, job_id)
        if record["status"] != "completed":
            raise GatewayError(
                f"Video job '{job_id}' is {record['status']}; its content is not ready.",
                status=409,
                type="invalid_request_error",
                code="video_not_ready",
            )
        model = self._model(record)
        state = video.JobState("completed", 100, None, record.get("content_url"))
        upstream = model.upstream
        if upstream.video_content == "redirect" and state.content_url:
            return state.content_url, None
        request = video.content_request(upstream, record["upstream_id"], state, upstream.api_key)
        if request is None:
            raise UpstreamError("The video upstream gave no way to fetch the video.")
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.HTTPError:
            raise UpstreamError("The video upstream could not be reached.") from None
        if response.status_code >= 400:
            await response.aclose()
            raise UpstreamError(f"The video upstream answered HTTP {response.status_code}.")
        return None, response

    async def aclose(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    # -- watching ------------------------------------------------------------------------------

    async def _watch(self, record: dict[str, Any], admission: Admission, started: float) -> None:
        status = "failed"
        try:
            while record["status"] not in video.TERMINAL:
                await asyncio.sleep(self.poll_interval_s)
                record = await self._refresh(record)
            status = record["status"]
        except asyncio.CancelledError:
            raise  # shutdown: the lease sweep gives the reservation back
        except Exception:
            log.exception("video job %s: watching failed", record["id"])
        finally:
            if status in video.TERMINAL:
                self._settle(record, admission, started)

    async def _refresh(self, record: dict[str, Any]) -> dict[str, Any]:
        """Ask the upstream once; store and return the record with what it said."""
        model = self._model(record)
        upstream = model.upstream
        request = video.status_request(upstream, record["upstream_id"], upstream.api_key)
        try:
            response = await self._transport.handle_async_request(request)
            body = await read_body(response, MAX_STATUS_BYTES)
        except (httpx.HTTPError, GatewayError):
            return record  # unknown for now: ask again later
        if response.status_code >= 400:
            if response.status_code != 404:
                return record
            state = video.JobState("failed", 0, "the upstream no longer knows this job")
        else:
            state = video.job_state(upstream.api, body)
        updated = {**record, "status": state.status, "progress": state.progress}
        if state.status in video.TERMINAL:
            updated |= {"completed_at": int(self._clock()), "error": state.error}
            updated["content_url"] = state.content_url
        if updated != record:
            await self._jobs.put(record["owner"], record["id"], updated, self._ttl_s)
        return updated

    def _settle(self, record: dict[str, Any], admission: Admission, started: float) -> None:
        model = self._model(record)
        ok = record["status"] == "completed"
        self._meter.finish(
            admission,
            Outcome(
                status=200 if ok else 502,
                model=model.name,
                provider=model.upstream.name,
                upstream_model=model.upstream_model,
                price=model.price,
                video_ms=int(record["seconds"]) * 1000 if ok else 0,
                attempts=int(record.get("attempts") or 1),
                latency_ms=(self._clock() - started) * 1000,
            ),
        )

    def _model(self, record: dict[str, Any]) -> Model:
        model = self._config.models.get(record["model"])
        if model is None:
            raise NotFound(f"The model of video job '{record['id']}' is no longer configured.")
        return model


PUBLIC_FIELDS = (
    "id", "model", "status", "progress", "seconds", "size", "prompt", "created_at",
    "completed_at", "expires_at",
)  # fmt: skip


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A job in OpenAI's ``video`` object shape (no owner, provider ids or URLs)."""
    out = {field: record.get(field) for field in PUBLIC_FIELDS}
    out["object"] = "video"
    out["remixed_from_video_id"] = None
    error = record.get("error")
    out["error"] = {"code": "video_generation_failed", "message": error} if error else None
    return out


def _json(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)
