"""The routes.yaml and tiers.yaml examples in docs/providers.md load as they are."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.config.load import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"


def blocks(kind: str) -> list[dict]:
    found = re.findall(r"```yaml\n# " + kind + r"[^\n]*\n(.*?)```", DOC.read_text(), re.S)
    return [yaml.safe_load(text) for text in found]


def test_each_provider_example_loads():
    routes = [*blocks("routes.yaml")]
    tiers = blocks("tiers.yaml")
    assert len(routes) == 3 and len(tiers) == 2
    merged = {"upstreams": {}, "models": {}}
    for doc in routes:
        merged["upstreams"].update(doc["upstreams"])
        merged["models"].update(doc["models"])
    merged["models"]["llama-70b"] = {
        "upstream": "together-video",
        "model": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "modality": "text",
    }
    tier_doc = {"tiers": {"pro": {**tiers[0]["tiers"]["pro"], **tiers[1]["tiers"]["pro"]}}}
    tier_doc["tiers"]["pro"]["routes"] = {
        **tiers[0]["tiers"]["pro"]["routes"],
        **tiers[1]["tiers"]["pro"]["routes"],
    }
    problems: list[str] = []
    config = parse_config(merged, tier_doc, {}, problems)
    assert problems == []
    assert config.upstreams["anthropic"].api == "anthropic"
    assert config.upstreams["together-video"].video_content == "redirect"
    assert config.models["sora-2"].price.per_second == 0.10
    assert config.models["stable-video"].upstream.api == "stability"
    assert [m.name for m in config.tiers["pro"].routes["video"]] == ["sora-2", "kling", "wan-video"]


def test_an_unknown_api_is_refused():
    problems: list[str] = []
    routes = {
        "upstreams": {"x": {"base_url": "http://x", "api": "grpc"}},
        "models": {"m": {"upstream": "x", "model": "m", "modality": "text"}},
    }
    parse_config(routes, {"tiers": {"t": {"routes": {"text": ["m"]}}}}, {}, problems)
    assert any("api" in problem and "grpc" in problem for problem in problems)
