"""Video jobs: a submitted job's record, its polling, its metering at the end, and its bytes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import httpx
import orjson

from gateway.config.model import Config, Model, Tier
from gateway.errors import GatewayError, NotFound, UpstreamError
from gateway.metering import Meter, Outcome, level_limits
from gateway.metering.types import Admission, MeterRequest
from gateway.providers import video
from gateway.providers.bodies import read_body
from gateway.providers.content_fetch import ContentFetcher, check_url
from gateway.providers.transport import Transport
from gateway.proxy.attempt_outcome import API_KEY_EXTENSION, Opened
from gateway.proxy.auth import Principal
from gateway.proxy.context import RequestContext
from gateway.proxy.credentials import KEY_SOURCE_USER, Credentials, key_used
from gateway.proxy.reply import Reply
from gateway.proxy.videos.records import public, reservation
from gateway.secret import Secret
from gateway.store.jobs import JobStore

log = logging.getLogger("gateway")
JOB_TTL_S = 7 * 86400
POLL_INTERVAL_S = 5.0
ADOPT_AFTER_S = 120.0  # a job whose watcher's heartbeat is older than this is adopted
MAX_STATUS_BYTES = 1024 * 1024


class VideoJobs:
    """Each submitted job is watched by the worker that submitted it until it ends, then
    settled with the meter: its seconds charged, or its reservation given back on failure.
    If that worker died, any worker that serves a GET of the ended job settles it instead
    (from the reservation kept in the record); a once-only mark per job settles it once.
    Every worker also sweeps for unsettled jobs whose watcher's heartbeat went quiet for
    ``adopt_after_s`` and watches them to their end, so no job goes uncharged for lack of a GET.

    The upstream is asked about a job with the key it was submitted with while the submitting
    worker watches it (held in memory only), else with the key ``keys.job_key`` picks from
    what the record notes of it."""

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
        adopt_after_s: float = ADOPT_AFTER_S,
        keys: Credentials | None = None,
    ) -> None:
        self._config = config
        self._keys = keys or Credentials()
        self._sent: dict[str, Secret] = {}  # job id → the key it was submitted with (watched)
        self._transport = transport
        self._meter = meter
        self._jobs = jobs
        self.poll_interval_s = poll_interval_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._watchers: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()  # ids of the jobs this worker watches
        self.adopt_after_s = adopt_after_s
        self._sweeper: asyncio.Task[None] | None = None
        self._fetcher = ContentFetcher(config.settings.video_content)

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
            "key": key_used(_request_of(opened.response), ctx.principal),
        }
        if ctx.admission is not None:
            admission, ctx.admission = ctx.admission, None  # the listener must not settle it
            record["metering"] = reservation(admission)
            await self._jobs.put(record["owner"], record["id"], record, self._ttl_s)
            await self._heartbeat(record)
            self._watched.add(record["id"])
            sent = _request_of(opened.response)
            key = None if sent is None else sent.extensions.get(API_KEY_EXTENSION)
            if isinstance(key, Secret):
                self._sent[record["id"]] = key
            task = asyncio.get_running_loop().create_task(self._watch(record, admission, now))
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
            task.add_done_callback(lambda _: self._watched.discard(record["id"]))
            task.add_done_callback(lambda _: self._sent.pop(record["id"], None))
        else:
            await self._jobs.put(record["owner"], record["id"], record, self._ttl_s)
        ctx.status = 200
        return Reply(200, ctx.indicator(), _json(public(record)))

    async def check_room(self, user: str) -> None:
        """429 when ``user`` already has ``max_open_video_jobs`` jobs running (each is polled
        upstream until it ends); checked before a submission goes upstream."""
        cap = self._config.settings.max_open_video_jobs
        running = sum(j["status"] not in video.TERMINAL for j in await self._jobs.list(user))
        if running >= cap:
            raise TooManyJobs(
                f"You have {running} video jobs running (at most {cap}); "
                "wait for one to finish before submitting another.",
                headers={"retry-after": str(int(self.poll_interval_s) + 1)},
            )

    async def get(self, principal: Principal, job_id: str) -> dict[str, Any]:
        """The caller's own job, refreshed from the upstream while it runs; 404 otherwise."""
        record = await self._jobs.get(principal.user, job_id)
        if record is None:
            raise NotFound(f"No video job '{job_id}'.", code="video_not_found")
        if record["status"] not in video.TERMINAL:
            record = await self._refresh(record, principal.byok_key)
        if (
            record["status"] in video.TERMINAL
            and record.get("metering")
            and not record.get("settled")
            and record["id"] not in self._watched
        ):
            record = await self._settle_orphan(record, principal.tier)
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
        url, upstream = record.get("content_url"), model.upstream
        if upstream.video_content == "redirect" and url:
            return str(check_url(url, self._fetcher.policy)), None
        key = self._key(record, model, principal.byok_key)
        if key is None and _users_job(record):
            raise GatewayError(
                f"Video job '{job_id}' was made with your own upstream key: send it in the "
                "X-Upstream-Api-Key header to fetch its content.",
                status=400,
                type="invalid_request_error",
                code="upstream_key_required",
            )
        request = video.content_request(upstream, record["upstream_id"], key)
        if request is None and url:  # a URL the upstream chose: fetched under the URL policy
            return None, await self._fetcher.open(url, video.timeouts(upstream))
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

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def aclose(self) -> None:
        tasks = [*self._watchers, *([self._sweeper] if self._sweeper else [])]
        self._sweeper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._fetcher.aclose()

    async def adopt_orphans(self) -> int:
        """Check once for unsettled jobs nobody watches; settle those that ended."""
        settled = 0
        now = self._clock()
        for (owner, job_id), beat in (await self._jobs.open_jobs()).items():
            if job_id in self._watched or now - beat < self.adopt_after_s:
                continue
            record = await self._jobs.get(owner, job_id)
            if record is None or record.get("settled") or not record.get("metering"):
                await self._jobs.close(owner, job_id)
                continue
            if record["status"] not in video.TERMINAL:
                record = await self._refresh(record)
                await self._heartbeat(record)  # the next sweep (here or elsewhere) asks again
            tier = self._config.tiers.get(str(record["metering"].get("tier")))
            if record["status"] in video.TERMINAL and tier is not None:
                await self._settle_orphan(record, tier)
                settled += 1
        return settled

    # -- watching ------------------------------------------------------------------------------

    async def _watch(self, record: dict[str, Any], admission: Admission, started: float) -> None:
        status = "failed"
        try:
            pace = video.POLL_PACE.get(self._model(record).upstream.api, 1)
            while record["status"] not in video.TERMINAL:
                await asyncio.sleep(self.poll_interval_s * pace)
                record = await self._refresh(record)
                await self._heartbeat(record)
            status = record["status"]
        except asyncio.CancelledError:
            raise  # shutdown: the lease sweep gives the reservation back
        except Exception:
            log.exception("video job %s: watching failed", record["id"])
        finally:
            if status in video.TERMINAL and await self._first_to_settle(record):
                self._meter.finish(admission, self._outcome(record, started))
                await self._closed(record)

    async def _sweep_forever(self) -> None:
        while True:  # the first at start: jobs a dead worker left are adopted now
            try:
                await self.adopt_orphans()
            except Exception:
                log.exception("video jobs: the sweep for unwatched jobs failed")
            await asyncio.sleep(min(30.0, self.adopt_after_s / 2))

    async def _heartbeat(self, record: dict[str, Any]) -> None:
        try:
            await self._jobs.heartbeat(record["owner"], record["id"], self._clock())
        except Exception:  # the sweep may adopt the job early: settling stays once-only
            log.warning("video job %s: heartbeat not written", record["id"])

    async def _closed(self, record: dict[str, Any]) -> None:
        try:
            await self._jobs.close(record["owner"], record["id"])
        except Exception:  # left in the open list: a later sweep closes it
            log.warning("video job %s: not removed from the open jobs", record["id"])

    def _key(self, record: dict[str, Any], model: Model, offered: Secret | None) -> Secret | None:
        """The key to ask the upstream about this job with (see the class docstring)."""
        sent = self._sent.get(record["id"])
        if sent is not None:
            return sent
        return self._keys.job_key(model.upstream, record["owner"], record.get("key"), offered)

    async def _refresh(
        self, record: dict[str, Any], offered: Secret | None = None
    ) -> dict[str, Any]:
        """Ask the upstream once; store and return the record with what it said (unchanged
        when it cannot be asked now: a user's job without the user's key at hand)."""
        model = self._model(record)
        upstream = model.upstream
        key = self._key(record, model, offered)
        if key is None and _users_job(record):
            return record
        request = video.status_request(upstream, record["upstream_id"], key)
        try:
            response = await self._transport.handle_async_request(request)
            state = await video.headline_state(upstream.api, response)
            body = b"" if state is not None else await read_body(response, MAX_STATUS_BYTES)
        except (httpx.HTTPError, GatewayError):
            return record  # unknown for now: ask again later
        if state is None and response.status_code >= 400:
            if response.status_code != 404:
                return record
            state = video.JobState("failed", 0, "the upstream no longer knows this job")
        elif state is None:
            state = video.job_state(upstream.api, body)
        updated = {**record, "status": state.status, "progress": state.progress}
        if state.status in video.TERMINAL:
            updated |= {"completed_at": int(self._clock()), "error": state.error}
            updated["content_url"] = state.content_url
        if updated != record:
            await self._jobs.put(record["owner"], record["id"], updated, self._ttl_s)
        return updated

    async def _first_to_settle(self, record: dict[str, Any]) -> bool:
        """Take the job's once-only settle mark and note it in the record; a store error
        counts as taken (the watcher settles rather than lose the charge)."""
        try:
            first = await self._jobs.settle_once(record["owner"], record["id"], self._ttl_s)
            if first:
                record["settled"] = True
                await self._jobs.put(record["owner"], record["id"], record, self._ttl_s)
            return first
        except Exception:
            log.exception("video job %s: settle mark failed", record["id"])
            return record["id"] in self._watched

    async def _settle_orphan(self, record: dict[str, Any], fallback_tier: Tier) -> dict[str, Any]:
        """Settle an ended job whose submitting worker stopped watching it (it died)."""
        record = dict(record)
        if not await self._first_to_settle(record):
            return record
        held = record["metering"]
        model = self._model(record)
        request = MeterRequest(
            request_id=str(record.get("request_id") or record["id"]),
            user=record["owner"],
            key_id=str(held.get("key_id") or ""),
            tier=self._config.tiers.get(str(held.get("tier"))) or fallback_tier,
            capability=str(held.get("capability") or "video_generation"),
            byok=bool(held.get("byok")),
            prompt_tokens_estimate=int(held.get("prompt_tokens_estimate") or 0),
            max_output_tokens=0,
            audio_ms_estimate=int(held.get("audio_ms_estimate") or 0),
            price=model.price,
            levels=level_limits.from_plain(held.get("levels")),
        )
        started = float(held["started"])
        granted = [int(amount) for amount in held.get("granted") or ()]
        outcome = self._outcome(record, started)
        self._meter.finish_elsewhere(request, started, str(held["lease"]), granted, outcome)
        log.info("video job %s: settled by this worker (its watcher was gone)", record["id"])
        await self._closed(record)
        return record

    def _outcome(self, record: dict[str, Any], started: float) -> Outcome:
        model = self._model(record)
        ok = record["status"] == "completed"
        return Outcome(
            status=200 if ok else 502,
            model=model.name,
            provider=model.upstream.name,
            upstream_model=model.upstream_model,
            price=model.price,
            video_ms=int(record["seconds"]) * 1000 if ok else 0,
            attempts=int(record.get("attempts") or 1),
            latency_ms=(self._clock() - started) * 1000,
        )

    def _model(self, record: dict[str, Any]) -> Model:
        model = self._config.models.get(record["model"])
        if model is None:
            raise NotFound(f"The model of video job '{record['id']}' is no longer configured.")
        return model


class TooManyJobs(GatewayError):
    status, type, code, label = 429, "rate_limit_error", "too_many_video_jobs", "quota"


def _request_of(response: httpx.Response) -> httpx.Request | None:
    """The request ``response`` answers (None when the transport did not attach it)."""
    try:
        return response.request
    except RuntimeError:
        return None


def _users_job(record: dict[str, Any]) -> bool:
    """Was the job submitted with the user's own upstream key?"""
    used = record.get("key")
    return isinstance(used, dict) and used.get("source") == KEY_SOURCE_USER


def _json(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)
