"""Upstream handling with respx: statuses, retry-after, fallback order, breaker, normalisation."""

import httpx
import orjson
import pytest
import respx

from gateway.config.model import BreakerPolicy, RetryPolicy
from gateway.providers.openai import build_request, upstream_error
from gateway.proxy.attempt_failure import classify_status, retry_after_seconds
from gateway.proxy.attempt_outcome import AttemptFailed, Verdict
from gateway.proxy.attempts import Attempter
from gateway.proxy.breaker import Breakers, State
from gateway.secret import Secret
from tests.support import build_config, routes_doc, tiers_doc

BASE = "http://up.test/v1"
URL = BASE + "/chat/completions"
POLICY = RetryPolicy(attempts=2, backoff_s=0.1, max_backoff_s=1, max_retry_after_s=5)
OK = {"id": "x", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


@pytest.fixture(scope="module")
def models():
    return build_config(routes_doc(BASE), tiers_doc(), {}).models


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Harness:
    def __init__(self, client, policy=POLICY, breaker=BreakerPolicy(failures=3, cooldown_s=10)):
        self.sleeps: list[float] = []
        self.clock = Clock()
        self.breakers = Breakers(breaker, self.clock)

        async def sleep(seconds):
            self.sleeps.append(seconds)

        self.client = client
        self.attempter = Attempter(client, policy, self.breakers, sleep=sleep, jitter=lambda: 1.0)

    async def run(self, chain, buffered=True, api_key=Secret("sk-system-123456789")):
        def build(model):
            body = orjson.dumps({"model": model.upstream_model})
            return build_request(
                model,
                "/chat/completions",
                json_body=body,
                api_key=api_key,
                request_id="r1",
            )

        return await self.attempter.run(chain, build, buffered=buffered, secrets=[api_key])


def by_model(responses):
    """A respx side effect answering per upstream model id from queues of responses."""
    queues = {model: list(items) for model, items in responses.items()}
    seen = []

    def answer(request):
        model = orjson.loads(request.content)["model"]
        seen.append(model)
        item = queues[model].pop(0) if len(queues[model]) > 1 else queues[model][0]
        if isinstance(item, Exception):
            raise item
        return item

    return answer, seen


def chain(models, *names):
    return tuple(models[name] for name in names)


@respx.mock
async def _run(harness, models, names, responses, **kwargs):
    answer, seen = by_model(responses)
    respx.post(URL).mock(side_effect=answer)
    try:
        return await harness.run(chain(models, *names), **kwargs), seen
    except AttemptFailed as failed:
        return failed, seen


def run(coro):
    import asyncio

    return asyncio.run(coro)


def test_retries_the_same_model_after_a_503(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            opened, seen = await _run(
                h,
                models,
                ["ok", "ok-b"],
                {
                    "mock/ok": [
                        httpx.Response(503, json={"error": {"message": "busy"}}),
                        httpx.Response(200, json=OK),
                    ],
                },
            )
            assert seen == ["mock/ok", "mock/ok"]
            assert opened.model.name == "ok" and opened.attempts == 2
            assert [r.error_type for r in opened.records] == ["http_503", None]
            assert h.sleeps == [0.1]  # backoff_s * 2**0 with jitter at its top

    run(scenario())


def test_retry_after_is_honoured_up_to_the_cap(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            limited = httpx.Response(429, headers={"retry-after": "2"}, json={})
            opened, _ = await _run(
                h, models, ["ok"], {"mock/ok": [limited, httpx.Response(200, json=OK)]}
            )
            assert h.sleeps == [2.0] and opened.attempts == 2

            h2 = Harness(client)
            too_long = httpx.Response(429, headers={"retry-after": "60"}, json={})
            opened, seen = await _run(
                h2,
                models,
                ["ok", "ok-b"],
                {"mock/ok": [too_long], "mock/ok-b": [httpx.Response(200, json=OK)]},
            )
            assert seen == ["mock/ok", "mock/ok-b"] and h2.sleeps == []

    run(scenario())


def test_retry_after_ms_wins_over_retry_after():
    headers = httpx.Headers({"retry-after-ms": "250", "retry-after": "3"})
    assert retry_after_seconds(headers) == 0.25
    assert retry_after_seconds(httpx.Headers({"retry-after": "3"})) == 3.0
    date = httpx.Headers({"retry-after": "Thu, 01 Jan 2026 00:00:10 GMT"})
    assert retry_after_seconds(date, now=1767225600.0) == 10.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None


def test_model_not_found_moves_on_at_once(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            missing = httpx.Response(
                404,
                json={
                    "id": "t",
                    "error": {
                        "message": "no",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    },
                },
            )
            unavailable = httpx.Response(
                400, json={"error": {"message": "down", "code": "model_not_available"}}
            )
            opened, seen = await _run(
                h,
                models,
                ["ok", "ok-b", "other-ok"],
                {
                    "mock/ok": [missing],
                    "mock/ok-b": [unavailable],
                    "other/ok": [httpx.Response(200, json=OK)],
                },
            )
            assert seen == ["mock/ok", "mock/ok-b", "other/ok"]
            assert h.sleeps == [] and opened.model.name == "other-ok"

    run(scenario())


@pytest.mark.parametrize("status", [400, 401, 403, 413, 422])
def test_client_errors_pass_through_without_retry_or_fallback(models, status):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            failed, seen = await _run(
                h,
                models,
                ["ok", "ok-b"],
                {"mock/ok": [httpx.Response(status, json={"error": {"message": "nope"}})]},
            )
            assert isinstance(failed, AttemptFailed)
            assert failed.error.status == status and seen == ["mock/ok"]

    run(scenario())


def test_network_failures_retry_then_fall_back_then_report_everything(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            failed, seen = await _run(
                h,
                models,
                ["ok", "ok-b"],
                {
                    "mock/ok": [httpx.ConnectError("refused")],
                    "mock/ok-b": [httpx.ReadTimeout("slow")],
                },
            )
            assert seen == ["mock/ok"] * 2 + ["mock/ok-b"] * 2
            assert failed.error.status == 504
            assert "ok: connect_error" in failed.error.message
            assert "ok-b: timeout" in failed.error.message

    run(scenario())


def test_last_upstream_status_is_what_the_client_gets(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            failed, _ = await _run(
                h,
                models,
                ["ok", "ok-b"],
                {
                    "mock/ok": [httpx.ConnectError("refused")],
                    "mock/ok-b": [httpx.Response(503, text="overloaded")],
                },
            )
            assert failed.error.status == 503 and "overloaded" in failed.error.message

    run(scenario())


def test_breaker_opens_skips_then_probes_and_closes(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client, policy=RetryPolicy(attempts=1))
            failing = {
                "mock/ok": [httpx.Response(500, json={})],
                "mock/ok-b": [httpx.Response(200, json=OK)],
            }
            for _ in range(3):
                await _run(h, models, ["ok", "ok-b"], failing)
            assert h.breakers.state("ok") is State.OPEN
            _, seen = await _run(h, models, ["ok", "ok-b"], failing)
            assert seen == ["mock/ok-b"]  # skipped while open
            h.clock.now += 10
            assert h.breakers.state("ok") is State.HALF_OPEN
            opened, seen = await _run(
                h, models, ["ok", "ok-b"], {"mock/ok": [httpx.Response(200, json=OK)]}
            )
            assert seen == ["mock/ok"] and opened.model.name == "ok"
            assert h.breakers.state("ok") is State.CLOSED

    run(scenario())


def test_failed_half_open_probe_opens_again():
    clock = Clock()
    breakers = Breakers(BreakerPolicy(failures=1, window_s=30, cooldown_s=5), clock)
    breakers.record_failure("m")
    assert breakers.state("m") is State.OPEN and not breakers.allow("m")
    clock.now += 5
    assert breakers.allow("m") and not breakers.allow("m")  # one probe at a time
    breakers.record_failure("m")
    assert breakers.state("m") is State.OPEN


def test_failures_outside_the_window_do_not_open():
    clock = Clock()
    breakers = Breakers(BreakerPolicy(failures=2, window_s=10, cooldown_s=5), clock)
    breakers.record_failure("m")
    clock.now += 11
    breakers.record_failure("m")
    assert breakers.state("m") is State.CLOSED


def test_no_credentials_means_no_target(models):
    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(client)
            failed = None
            try:
                await h.attempter.run(chain(models, "ok"), lambda model: None, buffered=True)
            except AttemptFailed as exc:
                failed = exc
            assert failed is not None and failed.error.status == 503
            assert "no upstream credentials" in failed.error.message

    run(scenario())


def test_classify_status():
    policy = RetryPolicy()
    assert classify_status(503, None, policy) is Verdict.RETRY
    assert classify_status(429, None, policy) is Verdict.RETRY
    assert classify_status(404, None, policy) is Verdict.NEXT
    assert classify_status(400, "model_not_available", policy) is Verdict.NEXT
    assert classify_status(400, None, policy) is Verdict.FINAL
    assert classify_status(501, None, policy) is Verdict.NEXT


def test_error_bodies_are_normalised_and_keys_redacted():
    together = orjson.dumps(
        {
            "id": "abc",
            "error": {
                "message": "Unable to access model x",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            },
        }
    )
    error = upstream_error(404, together, "application/json")
    assert error.body() == {
        "error": {
            "message": "Unable to access model x",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    flat = orjson.dumps(
        {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}
    )
    assert upstream_error(400, flat, "application/json").body()["error"] == {
        "message": "bad",
        "type": "BadRequestError",
        "param": None,
        "code": "upstream_error",
    }
    plain = upstream_error(502, b"upstream proxy error", "text/plain").body()["error"]
    assert plain["message"] == "upstream proxy error" and plain["type"] == "api_error"
    leaked = orjson.dumps({"error": {"message": "Invalid API key: sk-live-abcdef123456 / mine"}})
    message = upstream_error(401, leaked, "application/json", [Secret("mine")]).message
    assert "sk-live" not in message and "mine" not in message


def test_a_cancelled_half_open_probe_frees_the_slot(models):
    import asyncio

    async def scenario():
        async with httpx.AsyncHTTPTransport() as client:
            h = Harness(
                client,
                policy=RetryPolicy(attempts=1),
                breaker=BreakerPolicy(failures=1, cooldown_s=5),
            )
            h.breakers.record_failure("ok")
            h.clock.now += 5  # half-open: one probe may go

            async def hang(request):
                await asyncio.sleep(30)

            with respx.mock:
                respx.post(URL).mock(side_effect=hang)
                task = asyncio.create_task(h.run(chain(models, "ok")))
                await asyncio.sleep(0.05)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert h.breakers.allow("ok")  # the next request may probe

    run(scenario())
