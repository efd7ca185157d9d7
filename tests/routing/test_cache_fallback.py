"""The cached-response fallback as shipped: tiers.yaml keeps each user's text and code answers
(``cache: {text: {fallback: true}}``) to stand in when every upstream fails."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import yaml

from gateway.cli.config_files import check
from gateway.config.load import load_config
from tests.routing.test_cache import MESSAGES, chat, private_gateway, streamed, text_of
from tests.support import DEFAULT_ROUTES, routes_doc, tiers_doc

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((ROOT / "tiers.yaml").read_text())


def shipped_shape(tier: str = "free") -> dict[str, dict[str, object]]:
    """The test's routes with the shipped tier's cache section."""
    return {"free": {"routes": DEFAULT_ROUTES, "cache": SHIPPED["tiers"][tier]["cache"]}}


@pytest.mark.parametrize("tier", ["free", "premium", "enterprise"])
def test_every_shipped_tier_keeps_text_and_code_answers_as_a_fallback(tier: str) -> None:
    cache = load_config(ROOT, env={}).tiers[tier].cache
    for route in ("text", "code"):
        assert cache[route].fallback and not cache[route].shared, (tier, route)
        assert cache[route].ttl_s == 0  # no fresh hits: only a stand-in for a failed chain


@pytest.mark.parametrize("stream", [False, True])
def test_with_the_shipped_shape_a_failed_chain_gets_the_last_answer(stream: bool) -> None:
    with private_gateway(shipped_shape()) as (client, upstream):
        first = chat(client)
        assert "x-gateway-cache" not in first.headers  # not served from the cache
        whole = first.parse().choices[0].message.content
        second = chat(client)  # no fresh hits: the upstream answers again
        assert "x-gateway-cache" not in second.headers
        assert upstream.count("mock/ok") == 2
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


def test_a_streamed_answer_is_kept_too() -> None:
    with private_gateway(shipped_shape()) as (client, upstream):
        _, chunks = streamed(client)
        upstream.stop()
        raw = chat(client)
        assert raw.parse().choices[0].message.content == text_of(chunks)
        assert raw.headers["x-gateway-fallback"] == "cache"


def test_the_fallback_is_per_user_and_per_request() -> None:
    with private_gateway(shipped_shape()) as (client, upstream):
        chat(client)
        upstream.stop()
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(
                model="text", messages=[*MESSAGES, {"role": "user", "content": "and more?"}]
            )
        assert failed.value.status_code == 502


def test_check_warns_about_a_tier_without_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiers = {"bare": {"routes": DEFAULT_ROUTES}, "kept": shipped_shape()["free"]}
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc(tiers)))
    monkeypatch.setenv("MOCK_KEY", "sk-mock")
    monkeypatch.setenv("OTHER_KEY", "sk-other")
    assert check(str(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "warning: tier bare: no cached-response fallback" in err
    assert "tier kept:" not in err


def test_check_is_quiet_about_the_shipped_tiers(capsys: pytest.CaptureFixture[str]) -> None:
    assert check(str(ROOT)) == 0
    assert "cached-response fallback" not in capsys.readouterr().err
