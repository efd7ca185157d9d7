import pytest

from gateway.errors import Forbidden, ModelNotFound
from gateway.proxy.routing import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    IMAGES,
    RERANK,
    SPEECH,
    TRANSCRIPTIONS,
    passthrough_endpoint,
    resolve,
)
from tests.support import DEFAULT_ROUTES, build_config, routes_doc, tiers_doc

ROUTES = {**DEFAULT_ROUTES, "text": ["ok", "ok-b", "other-ok"]}


@pytest.fixture(scope="module")
def config():
    tiers = {"free": {"routes": ROUTES}, "small": {"routes": {"text": ["ok-b"]}}}
    return build_config(routes_doc("http://127.0.0.1:9/v1"), tiers_doc(tiers), {})


def chain_names(plan):
    return [m.name for m in plan.chain]


def test_route_name_gives_its_chain(config):
    plan = resolve(config, config.tiers["free"], CHAT, "text", {})
    assert (plan.route, plan.capability) == ("text", "text_generation")
    assert chain_names(plan) == ["ok", "ok-b", "other-ok"]


@pytest.mark.parametrize("requested", [None, "auto"])
def test_auto_or_missing_model_uses_the_endpoint_default(config, requested):
    tier = config.tiers["free"]
    assert resolve(config, tier, CHAT, requested, {}).route == "text"
    assert resolve(config, tier, COMPLETIONS, requested, {}).route == "code"
    assert resolve(config, tier, EMBEDDINGS, requested, {}).route == "embedding"
    assert resolve(config, tier, IMAGES, requested, {}).route == "image"
    assert resolve(config, tier, SPEECH, requested, {}).route == "tts"
    assert resolve(config, tier, TRANSCRIPTIONS, requested, {}).route == "stt"
    assert resolve(config, tier, RERANK, requested, {}).route == "rerank"


def test_image_parts_route_chat_to_vision(config):
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ]
    }
    plan = resolve(config, config.tiers["free"], CHAT, "auto", body)
    assert (plan.route, plan.capability) == ("vision", "vision_analysis")


@pytest.mark.parametrize("hint", [{"purpose": "coding"}, {"language": "python"}])
def test_coding_hints_route_chat_to_code(config, hint):
    plan = resolve(config, config.tiers["free"], CHAT, None, {"messages": [], **hint})
    assert (plan.route, plan.capability) == ("code", "code_generation")


def test_concrete_model_gives_it_then_the_rest_of_its_chain(config):
    plan = resolve(config, config.tiers["free"], CHAT, "ok-b", {})
    assert chain_names(plan) == ["ok-b", "other-ok"]
    assert plan.capability == "text_generation"


def test_upstream_id_resolves_like_the_model_name(config):
    plan = resolve(config, config.tiers["free"], CHAT, "other/ok", {})
    assert chain_names(plan) == ["other-ok"]


def test_model_outside_the_tier_is_403(config):
    with pytest.raises(Forbidden) as raised:
        resolve(config, config.tiers["small"], CHAT, "ok", {})
    assert raised.value.status == 403 and raised.value.param == "model"


def test_route_the_tier_lacks_is_403(config):
    with pytest.raises(Forbidden):
        resolve(config, config.tiers["small"], CHAT, "code", {})


def test_unknown_model_is_404_model_not_found(config):
    with pytest.raises(ModelNotFound) as raised:
        resolve(config, config.tiers["free"], CHAT, "gpt-17", {})
    assert raised.value.code == "model_not_found" and raised.value.status == 404


def test_passthrough_needs_a_model(config):
    with pytest.raises(ModelNotFound):
        resolve(config, config.tiers["free"], passthrough_endpoint("/videos"), None, {})
    plan = resolve(config, config.tiers["free"], passthrough_endpoint("/videos"), "video", {})
    assert plan.capability == "video_generation"


def test_a_keys_allow_list_cuts_the_fallback_chain(config):
    from gateway.proxy.routing import within_allow_list

    tier = config.tiers["free"]
    plan = resolve(config, tier, CHAT, "ok", {})
    assert chain_names(plan) == ["ok", "ok-b", "other-ok"]
    assert chain_names(within_allow_list(plan, frozenset({"ok"}), "ok")) == ["ok"]
    assert chain_names(within_allow_list(plan, frozenset({"ok", "other-ok"}), "ok")) == [
        "ok",
        "other-ok",
    ]
    by_upstream_id = within_allow_list(plan, frozenset({"mock/ok"}), "mock/ok")
    assert chain_names(by_upstream_id) == ["ok"]
    everything = frozenset({"ok", "ok-b", "other-ok"})
    assert within_allow_list(plan, everything, "ok") is plan  # nothing to cut: no copy
    assert within_allow_list(plan, frozenset({"text"}), "ok") is plan  # the route is allowed
    with pytest.raises(Forbidden) as refused:
        within_allow_list(plan, frozenset({"embed"}), "ok")
    assert "'ok'" in refused.value.message and refused.value.param == "model"


def test_a_reloaded_config_resolves_through_its_own_tiers(config):
    first = resolve(config, config.tiers["free"], CHAT, "text", {})
    assert resolve(config, config.tiers["free"], CHAT, "text", {}) == first
    tiers = {"free": {"routes": {**DEFAULT_ROUTES, "text": ["other-ok"]}}}
    reloaded = build_config(routes_doc("http://127.0.0.1:9/v1"), tiers_doc(tiers), {})
    assert chain_names(resolve(reloaded, reloaded.tiers["free"], CHAT, "text", {})) == ["other-ok"]
    assert chain_names(resolve(config, config.tiers["free"], CHAT, "text", {})) == [
        "ok",
        "ok-b",
        "other-ok",
    ]
