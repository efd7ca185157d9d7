"""TOGETHER_AI_API_KEY through a served gateway: an upstream configured with
``api_key_env: TOGETHER_API_KEY`` sends the alias's key when only the alias is set, and its own
variable's key when both are (issue 26, item 8)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.store.factory import create_store
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

CLIENT_KEY = "sk-test-alias-client-0123456789"


@pytest.mark.parametrize(
    ("env", "sent"),
    [
        ({"TOGETHER_AI_API_KEY": "sk-plan-alias-key-1"}, "sk-plan-alias-key-1"),
        (
            {"TOGETHER_AI_API_KEY": "sk-plan-alias-key-1", "TOGETHER_API_KEY": "sk-own-name-2"},
            "sk-own-name-2",
        ),
    ],
)
def test_the_upstream_is_sent_the_aliased_key(
    upstream: Any, env: dict[str, str], sent: str
) -> None:
    routes = routes_doc(upstream.base_url)
    routes["upstreams"]["mock"]["api_key_env"] = "TOGETHER_API_KEY"
    tiers = tiers_doc({"free": {"routes": DEFAULT_ROUTES}})
    config = build_config(routes, tiers, {**env, "GATEWAY_KEYS": f"{CLIENT_KEY}=free:alias-user"})
    runtime = Runtime()
    app = create_app(config, runtime, metrics=Metrics(), store=create_store(None, config.settings))
    server = ThreadedServer(app, gateway=True).start()
    try:
        with openai.OpenAI(
            base_url=server.url + "/v1", api_key=CLIENT_KEY, max_retries=0
        ) as client:
            reply = client.chat.completions.create(
                model="text", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        server.stop()
    assert reply.choices[0].message.content
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {sent}"
