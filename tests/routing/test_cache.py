"""The exact response cache through the openai SDK against the mock upstream (its request
counts say what went upstream): hits, streamed and not, coalescing, bypass, metering."""

import asyncio
import contextlib
import time

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import command, wait_for
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

MESSAGES = [{"role": "user", "content": "what is the cache?"}]


def cached_tiers(**policy):
    return {"free": {"routes": DEFAULT_ROUTES, "cache": {"text": {"ttl_s": 60, **policy}}}}


@pytest.fixture
def gw(start_gateway):
    return start_gateway(cached_tiers())


@pytest.fixture
def client(gw):
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        yield client


def chat(client, **extra):
    return client.chat.completions.with_raw_response.create(
        model="text", messages=MESSAGES, **extra
    )


def streamed(client, **extra):
    raw = chat(client, stream=True, **extra)
    return raw.headers, list(raw.parse())


def text_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_repeated_request_is_served_from_the_cache(client, upstream):
    first, second = chat(client), chat(client, temperature=None)
    assert first.headers["x-gateway-cache"] == "miss"
    assert second.headers["x-gateway-cache"] == "hit"
    assert upstream.count("mock/ok") == 1
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.headers["x-gateway-model"] == "ok"


def test_field_order_does_not_matter_but_the_body_does(client, upstream):
    chat(client, temperature=0.5, top_p=0.9)
    assert chat(client, top_p=0.9, temperature=0.5).headers["x-gateway-cache"] == "hit"
    assert chat(client, top_p=0.8, temperature=0.5).headers["x-gateway-cache"] == "miss"
    assert upstream.count("mock/ok") == 2


def test_a_streamed_request_is_served_from_the_cache_as_a_stream(client, upstream):
    headers, live = streamed(client)
    assert headers["x-gateway-cache"] == "miss"
    headers, replayed = streamed(client)
    assert headers["x-gateway-cache"] == "hit"
    assert headers["content-type"].startswith("text/event-stream")
    assert upstream.count("mock/ok") == 1
    assert text_of(replayed) == text_of(live)
    assert all(chunk.choices for chunk in replayed)  # no usage chunk unasked
    assert replayed[-1].choices[0].finish_reason == "stop"
    _, with_usage = streamed(client, stream_options={"include_usage": True})
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == 5
    assert upstream.count("mock/ok") == 1


def test_a_streamed_fill_answers_a_non_streamed_request_and_back(client, upstream):
    _, live = streamed(client)
    whole = chat(client)
    assert whole.headers["x-gateway-cache"] == "hit"
    answer = whole.parse()
    assert answer.choices[0].message.content == text_of(live)
    assert answer.choices[0].message.role == "assistant" and answer.usage.total_tokens > 0
    chat(client, max_tokens=7)  # a different key, filled non-streamed
    headers, replayed = streamed(client, max_tokens=7)
    assert headers["x-gateway-cache"] == "hit" and text_of(replayed)
    assert upstream.count("mock/ok") == 2


def test_bypass_headers_go_upstream(client, upstream):
    chat(client)
    no_store = chat(client, extra_headers={"x-gateway-cache": "no-store"})
    no_cache = chat(client, extra_headers={"cache-control": "no-cache"})
    assert no_store.headers["x-gateway-cache"] == no_cache.headers["x-gateway-cache"] == "bypass"
    assert upstream.count("mock/ok") == 3


def test_a_request_may_ask_for_caching_on_a_route_without_it(start_gateway, upstream):
    gw = start_gateway()
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        assert "x-gateway-cache" not in chat(client).headers  # off: nothing said
        asked = {"x-gateway-cache": "ttl=30"}
        assert chat(client, extra_headers=asked).headers["x-gateway-cache"] == "miss"
        assert chat(client, extra_headers=asked).headers["x-gateway-cache"] == "hit"
        with pytest.raises(openai.BadRequestError) as bad:
            chat(client, extra_headers={"x-gateway-cache": "ttl=soon"})
        assert bad.value.body["param"] == "x-gateway-cache"
    assert upstream.count("mock/ok") == 2


def test_a_route_may_forbid_caching(start_gateway, upstream):
    gw = start_gateway(cached_tiers(ttl_s=0, allow=False))
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        for _ in range(2):
            chat(client, extra_headers={"x-gateway-cache": "ttl=30"})
    assert upstream.count("mock/ok") == 2


def test_users_do_not_share_entries_unless_the_route_says_so(start_gateway, upstream):
    tiers = cached_tiers()
    tiers["pro"] = {"routes": DEFAULT_ROUTES, "cache": {"text": {"ttl_s": 60}}}
    gw = start_gateway(tiers)
    for tier in ("free", "pro", "free"):
        with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(tier), max_retries=0) as c:
            chat(c)
    assert upstream.count("mock/ok") == 2


def test_errors_and_cut_streams_are_not_cached(start_gateway, upstream):
    routes = {**DEFAULT_ROUTES, "text": ["drop"], "code": ["bad-400"]}
    policy = {"ttl_s": 60}
    gw = start_gateway({"free": {"routes": routes, "cache": {"text": policy, "code": policy}}})
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="code", messages=MESSAGES)
            raw = chat(client, stream=True)
            assert raw.headers["x-gateway-cache"] == "miss"
            with pytest.raises(openai.APIError):
                list(raw.parse())
    assert upstream.count("mock/bad-400") == 2 and upstream.count("mock/drop-2") == 2


def test_concurrent_identical_misses_go_upstream_once(start_gateway, upstream):
    routes = {**DEFAULT_ROUTES, "text": ["slow"]}  # 20 chunks, 20 ms apart
    gw = start_gateway({"free": {"routes": routes, "cache": {"text": {"ttl_s": 60}}}})

    async def run():
        async with openai.AsyncOpenAI(
            base_url=gw.base_url, api_key=gw.key(), max_retries=0
        ) as client:

            async def one():
                raw = await client.chat.completions.with_raw_response.create(
                    model="text", messages=MESSAGES, stream=True
                )
                chunks = [chunk async for chunk in raw.parse()]
                return raw.headers["x-gateway-cache"], text_of(chunks)

            return await asyncio.gather(*(one() for _ in range(20)))

    results = asyncio.run(run())
    assert upstream.count("mock/slow-20+words-20") == 1
    assert sorted(result for result, _ in results) == ["hit"] * 19 + ["miss"]
    assert len({text for _, text in results}) == 1


def test_a_stream_left_right_after_done_is_still_kept(start_gateway, upstream):
    """The client has the whole answer at [DONE] and may hang up before the upstream's body
    ends (here 500 ms later, as a loaded machine spreads it): the answer is kept all the same."""
    routes = {**DEFAULT_ROUTES, "text": ["lingering"]}
    gw = start_gateway({"free": {"routes": routes, "cache": {"text": {"ttl_s": 60}}}})
    body = {"model": "text", "messages": MESSAGES, "stream": True}
    auth = {"authorization": f"Bearer {gw.key()}"}
    with httpx.Client(timeout=5) as http:
        url = f"{gw.base_url}/chat/completions"
        with http.stream("POST", url, json=body, headers=auth) as response:
            assert response.headers["x-gateway-cache"] == "miss"
            seen = b""
            for part in response.iter_bytes():
                seen += part
                if b"data: [DONE]" in seen:
                    break  # closed here, mid-body
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        headers, chunks = streamed(client)
    assert headers["x-gateway-cache"] == "hit"
    assert upstream.count("mock/linger-500+words-5") == 1
    assert text_of(chunks)


def test_hits_are_metered_with_zero_tokens_and_counted(gw, client):
    chat(client)
    chat(client)
    records = wait_for_records(gw, 2)
    assert [r.cache for r in records] == ["miss", "hit"]
    assert records[1].total_tokens == 0 and records[1].cost_usd == 0
    assert records[0].total_tokens > 0
    metrics = gw.gateway.metrics
    assert metrics.cache_requests.labels("free", "hit")._value.get() == 1


def test_the_cache_lives_in_redis_when_configured(start_gateway, upstream, redis):
    runtime = Runtime(redis_url=redis.url)
    first = start_gateway(cached_tiers(), runtime=runtime)
    second = start_gateway(cached_tiers(), runtime=runtime)  # another replica
    with openai.OpenAI(base_url=first.base_url, api_key=first.key(), max_retries=0) as client:
        _, live = streamed(client)
    # the fill is written in the background once the stream ended
    wait_for(lambda: command(redis.port, "KEYS", "gw:cache:*").startswith(b"*1"), 5, "fill")
    with openai.OpenAI(base_url=second.base_url, api_key=second.key(), max_retries=0) as client:
        headers, replayed = streamed(client)
    assert headers["x-gateway-cache"] == "hit" and text_of(replayed) == text_of(live)
    assert upstream.count("mock/ok") == 1


def wait_for_records(gw, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = asyncio.run(gw.gateway.usage_records.read(None, 0, time.time() + 60))
        if len(records) >= count:
            return records
        time.sleep(0.02)
    raise AssertionError(f"expected {count} usage records")


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@contextlib.contextmanager
def private_gateway(tiers, **app_kwargs):
    """A gateway in front of its own mock upstream, which the test may stop: every target
    of every chain then fails (connection refused), whatever the breakers say."""
    upstream = MockUpstream()
    upstream.start()
    key = "sk-test-private-0123456789"
    config = build_config(
        routes_doc(upstream.base_url), tiers_doc(tiers), {"GATEWAY_KEYS": f"{key}=free:alice"}
    )
    server = ThreadedServer(create_app(config, Runtime(), metrics=Metrics(), **app_kwargs))
    server.start()
    try:
        with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as client:
            yield client, upstream
    finally:
        server.stop()
        upstream.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_chain_is_answered_from_a_stale_entry(stream):
    clock = Clock()
    with private_gateway(cached_tiers(ttl_s=10), clock=clock) as (client, upstream):
        whole = chat(client).parse().choices[0].message.content
        clock.now += 3600  # far past the TTL, within the default 24 h stale limit
        upstream.stop()  # every target of the chain now fails
        if stream:
            headers, chunks = streamed(client)
            assert text_of(chunks) == whole
        else:
            raw = chat(client)
            headers = raw.headers
            assert raw.parse().choices[0].message.content == whole
    assert headers["x-gateway-fallback"] == "cache" and headers["x-gateway-cache"] == "hit"
    assert int(headers["x-gateway-attempts"]) >= 2  # the chain was tried first


def test_past_the_stale_limit_the_error_stands():
    clock = Clock()
    with private_gateway(cached_tiers(ttl_s=10), clock=clock) as (client, upstream):
        chat(client)
        clock.now += 10 + 86_400 + 1
        upstream.stop()
        with pytest.raises(openai.APIStatusError) as failed:
            chat(client)
        assert failed.value.status_code == 502
        assert failed.value.response.headers["x-gateway-cache"] == "miss"


def test_without_a_cache_the_error_stands():
    with private_gateway({"free": {"routes": DEFAULT_ROUTES}}) as (client, upstream):
        chat(client)
        upstream.stop()
        with pytest.raises(openai.APIStatusError) as failed:
            chat(client)
        assert failed.value.status_code == 502
        assert "x-gateway-cache" not in failed.value.response.headers


def test_the_memory_store_sweeps_expired_entries_as_it_fills():
    from gateway.store.memory import MemoryStore

    clock = Clock()
    store = MemoryStore(stream_maxlen=10, clock=clock)

    async def fill(prefix, count):
        for n in range(count):
            await store.put_document(f"gw:cache:{prefix}{n}", "v", b"x", 10)

    asyncio.run(fill("old", 1000))
    clock.now += 11  # all of them expired, none read again
    asyncio.run(fill("new", 100))
    assert len(store._documents) < 200
    assert asyncio.run(store.get_document("gw:cache:new99", "v")) == b"x"


def test_a_shared_route_shares_entries_among_users_but_not_byok_answers(start_gateway, upstream):
    import hashlib

    bob = "sk-test-bob-0123456789"
    keys = [{"user": "bob", "tier": "free", "key_sha256": hashlib.sha256(bob.encode()).hexdigest()}]
    gw = start_gateway(cached_tiers(shared=True), tiers_extra={"keys": keys})
    for key in (gw.key(), bob):
        with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as client:
            chat(client)
    assert upstream.count("mock/ok") == 1  # bob got alice's answer: the tier shares it
    byok = {"x-upstream-api-key": "sk-bobs-own-upstream-key-1"}
    with openai.OpenAI(base_url=gw.base_url, api_key=bob, max_retries=0) as client:
        assert chat(client, extra_headers=byok).headers["x-gateway-cache"] == "miss"
        assert chat(client, extra_headers=byok).headers["x-gateway-cache"] == "hit"  # bob's own
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        assert chat(client).headers["x-gateway-cache"] == "hit"  # the shared one, not bob's
    assert upstream.count("mock/ok") == 2


def test_tags_are_recorded_on_hits_too(gw, client):
    for _ in range(2):
        chat(client, extra_headers={"x-gateway-tags": "cached"})
    records = wait_for_records(gw, 2)
    assert [(r.cache, r.tags) for r in records] == [("miss", ("cached",)), ("hit", ("cached",))]


def test_a_requested_ttl_never_stretches_the_routes_ttl(start_gateway, upstream):
    """One caller's ``ttl=86400`` on a shared route must not keep the answer for everyone."""
    import hashlib

    clock = Clock()
    bob = "sk-test-bob-0123456789"
    keys = [{"user": "bob", "tier": "free", "key_sha256": hashlib.sha256(bob.encode()).hexdigest()}]
    tiers = cached_tiers(ttl_s=10, shared=True)
    gw = start_gateway(tiers, tiers_extra={"keys": keys}, clock=clock)
    stretch = {"x-gateway-cache": "ttl=86400"}
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0) as client:
        assert chat(client, extra_headers=stretch).headers["x-gateway-cache"] == "miss"
    clock.now += 60  # past the route's 10 s, well within the asked-for day
    with openai.OpenAI(base_url=gw.base_url, api_key=bob, max_retries=0) as client:
        assert chat(client).headers["x-gateway-cache"] == "miss"
        shorter = {"x-gateway-cache": "ttl=5"}  # asking for less is allowed
        clock.now += 60
        assert chat(client, extra_headers=shorter).headers["x-gateway-cache"] == "miss"
        clock.now += 6
        assert chat(client).headers["x-gateway-cache"] == "miss"
    assert upstream.count("mock/ok") == 4
