"""A tier's ``byok_models``: a caller with their own upstream key may name models outside the
tier (the id passed through to that upstream), metered as BYOK; without a key a clear 403."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from gateway.config.reader import ConfigError
from tests.support import DEFAULT_ROUTES, build_config, routes_doc, tiers_doc

OWN_KEY = "sk-caller-own-account-key-123"
MESSAGES = [{"role": "user", "content": "hi"}]


def client(gw: Any, own_key: str | None = OWN_KEY) -> openai.OpenAI:
    headers = {"x-upstream-api-key": own_key} if own_key else {}
    return openai.OpenAI(
        base_url=gw.base_url, api_key=gw.key(), max_retries=0, default_headers=headers
    )


def usage(gw: Any, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        response = httpx.get(
            gw.base_url + "/usage",
            params={"from": "2020-01-01", "to": "2100-01-01"},
            headers={"authorization": f"Bearer {gw.key()}"},
        )
        data: list[dict[str, Any]] = response.json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def served(start_gateway: Any, byok_models: Any = None) -> Any:
    tier: dict[str, Any] = {"routes": DEFAULT_ROUTES}
    if byok_models is not None:
        tier["byok_models"] = byok_models
    return start_gateway({"free": tier})


def test_any_model_of_the_provider_with_an_own_key_passes_through_as_byok(start_gateway, upstream):
    gw = served(start_gateway, "any")
    with client(gw) as sdk:
        reply = sdk.chat.completions.create(model="acct/fine-tuned-7b", messages=MESSAGES)
    assert reply.choices[0].message.content
    sent = upstream.requests[-1]
    assert sent.json["model"] == "acct/fine-tuned-7b"
    assert sent.headers["authorization"] == f"Bearer {OWN_KEY}"
    (record,) = usage(gw, 1)
    assert record["model"] == "acct/fine-tuned-7b" and record["provider"] == "mock"
    assert record["byok"] is True and record["charged_usd"] == 0
    assert record["prompt_tokens"] > 0


def test_without_an_own_key_the_model_is_refused_naming_the_need_for_one(start_gateway):
    gw = served(start_gateway, "any")
    with client(gw, own_key=None) as sdk, pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.chat.completions.create(model="acct/fine-tuned-7b", messages=MESSAGES)
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "own_key_required"
    assert error["param"] == "model" and error["type"] == "permission_error"
    assert "your own 'mock' API key" in error["message"]
    assert "X-Upstream-Api-Key" in error["message"]
    assert usage(gw, 0) == [] or all(r["status"] == 403 for r in usage(gw, 0))


def test_a_list_unlocks_only_the_models_it_names(start_gateway, upstream):
    gw = served(start_gateway, ["acct/model-a"])
    with client(gw) as sdk:
        assert sdk.chat.completions.create(model="acct/model-a", messages=MESSAGES).choices
        assert upstream.requests[-1].json["model"] == "acct/model-a"
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="acct/model-b", messages=MESSAGES)


def test_configured_models_of_the_provider_by_name_but_not_another_providers(
    start_gateway, upstream
):
    gw = served(start_gateway, {"mock": "any"})
    with client(gw) as sdk:
        # "smart" is configured (upstream mock) but not in the tier: sent as its upstream id
        raw = sdk.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
        assert raw.headers["x-gateway-model"] == "smart"
        assert upstream.requests[-1].json["model"] == "mock/smart+toolcall+json"
        # "other-ok" is served by the upstream "other", which byok_models does not name
        with pytest.raises(openai.PermissionDeniedError) as refused:
            sdk.chat.completions.create(model="other-ok", messages=MESSAGES)
        assert refused.value.code == "model_not_allowed"


def test_the_tiers_own_models_are_unchanged_and_no_byok_models_means_no_pass_through(
    start_gateway, upstream
):
    gw = served(start_gateway)
    with client(gw) as sdk:
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="acct/fine-tuned-7b", messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            sdk.chat.completions.create(model="smart", messages=MESSAGES)
        assert refused.value.code == "model_not_allowed"
    with client(served(start_gateway, "any"), own_key=None) as sdk:
        assert sdk.chat.completions.create(model="text", messages=MESSAGES).choices
        assert upstream.requests[-1].json["model"] == "mock/ok"


def test_embeddings_use_the_endpoints_route(start_gateway, upstream):
    gw = served(start_gateway, "any")
    with client(gw) as sdk:
        result = sdk.embeddings.create(model="acct/embedder", input=["one"])
    assert result.data and upstream.requests[-1].json["model"] == "acct/embedder"
    (record,) = usage(gw, 1)
    assert record["byok"] is True and record["capability"] == "embeddings"


@pytest.mark.parametrize(
    ("byok_models", "problem"),
    [
        ({"mock": "any", "other": "any"}, "only one provider may take any model"),
        ({"nowhere": "any"}, "unknown upstream 'nowhere'"),
        ({"mock": ["a"], "other": ["a"]}, "'a' is already listed for 'mock'"),
        ("all", "expected a list"),
    ],
)
def test_config_errors_name_the_problem(byok_models, problem):
    tiers = tiers_doc({"free": {"routes": DEFAULT_ROUTES, "byok_models": byok_models}})
    with pytest.raises(ConfigError) as raised:
        build_config(routes_doc("http://127.0.0.1:9"), tiers, {})
    assert problem in str(raised.value)
    assert "byok_models" in str(raised.value)
