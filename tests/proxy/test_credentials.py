"""Which key each attempt is sent with (``proxy/credentials``), seen from the mock upstream:
the caller's own key only to the chain's first upstream, the configured key elsewhere, and no
key echoed back in an answer."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.proxy.harness import CLIENT_KEY, MOCK_KEY, proxy
from tests.support import DEFAULT_ROUTES, OTHER_KEY

OWN_KEY = "sk-callers-own-upstream-key-0123456789"


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def test_the_callers_own_key_goes_to_the_first_upstream_only_and_no_system_key_replaces_it() -> (
    None
):
    routes = {**DEFAULT_ROUTES, "text": ["fail-500", "other-ok"]}

    async def main() -> None:
        async with proxy(tiers={"free": {"routes": routes}}) as running:
            own = {"x-upstream-api-key": OWN_KEY}
            answer = await running.post("/chat/completions", chat("fail-500"), headers=own)
            assert answer.status == 500, answer.body
            assert "other-ok: no upstream credentials" in answer.error["message"]
            sent = [(r.model, r.headers["authorization"]) for r in running.seen()]
            assert sent == [("mock/fail-500", f"Bearer {OWN_KEY}")] * 2

    asyncio.run(main())


def test_without_an_own_key_each_upstream_gets_its_configured_key() -> None:
    routes = {**DEFAULT_ROUTES, "text": ["fail-500", "other-ok"]}

    async def main() -> None:
        async with proxy(tiers={"free": {"routes": routes}}) as running:
            assert (await running.post("/chat/completions", chat("fail-500"))).status == 200
            keys = {r.model: r.headers["authorization"] for r in running.seen()}
            assert keys == {
                "mock/fail-500": f"Bearer {MOCK_KEY}",
                "other/ok": f"Bearer {OTHER_KEY}",
            }

    asyncio.run(main())


def test_an_upstream_echoing_the_key_it_got_never_shows_it_to_the_caller() -> None:
    """The mock's ``auth-401`` answer quotes the Authorization header it received."""

    async def main() -> None:
        routes = {**DEFAULT_ROUTES, "text": ["auth-401"]}
        async with proxy(tiers={"free": {"routes": routes}}) as running:
            for headers in ({}, {"x-upstream-api-key": OWN_KEY}):
                answer = await running.post("/chat/completions", chat("auth-401"), headers=headers)
                assert answer.status >= 400 and set(answer.error) >= {"message", "type"}
                for secret in (MOCK_KEY, OWN_KEY, CLIENT_KEY):
                    assert secret not in answer.body.decode()
                    assert secret not in str(answer.headers)
            assert len(running.seen()) >= 2

    asyncio.run(main())
