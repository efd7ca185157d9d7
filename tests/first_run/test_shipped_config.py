"""The shipped tiers.yaml encodes the plan's numbers; the schema and its reference agree."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from gateway.config.load import load_config
from gateway.config.schema import config_schema, reference_markdown
from tests.first_run import model_tables
from tests.first_run.process import ROOT

FREE_PLAN = {
    "text_generation": {
        "requests_per_day": 50,
        "tokens_per_day": 10_000,
        "tokens_per_request": 2_000,
    },
    "code_generation": {
        "requests_per_day": 30,
        "tokens_per_day": 15_000,
        "tokens_per_request": 3_000,
    },
    "image_generation": {"requests_per_day": 10},
    "vision_analysis": {"requests_per_day": 20},
    "audio_tts": {"requests_per_day": 10, "minutes_per_day": 5},
    "audio_stt": {"requests_per_day": 10, "minutes_per_day": 10},
}


def test_free_tier_numbers_match_the_plan() -> None:
    free = yaml.safe_load((ROOT / "tiers.yaml").read_text())["tiers"]["free"]
    for capability, numbers in FREE_PLAN.items():
        for name, value in numbers.items():
            assert free["quotas"][capability][name] == value, (capability, name)


def test_the_tier_cap_does_not_hold_code_below_its_per_request_quota() -> None:
    free = load_config(ROOT, env={}).tiers["free"]
    code = free.quota("code_generation").tokens_per_request
    assert code == 3_000
    assert free.max_tokens is None or free.max_tokens >= code


@pytest.mark.parametrize("name", ["routes.yaml", "tiers.yaml"])
def test_shipped_files_validate_against_the_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema()[name])
    jsonschema.Draft202012Validator(config_schema()[name]).validate(
        yaml.safe_load((ROOT / name).read_text())
    )


def test_the_configuration_reference_is_the_schema() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    begin = "<!-- generated from gateway/config/schema.py: begin -->\n"
    end = "<!-- generated from gateway/config/schema.py: end -->"
    assert text[text.index(begin) + len(begin) : text.index(end)] == reference_markdown()


def test_every_schema_key_is_accepted_by_the_loader(tmp_path) -> None:
    """A key the schema documents but the loader refuses would be a lie in the reference."""
    routes = yaml.safe_load((ROOT / "routes.yaml").read_text())
    tiers = yaml.safe_load((ROOT / "tiers.yaml").read_text())
    schema = config_schema()
    routes["upstreams"]["together"].update(
        {key: _sample(s) for key, s in _props(schema["routes.yaml"], "upstreams").items()}
    )
    routes["upstreams"]["together"]["base_url"] = "https://api.together.xyz/v1"
    routes["upstreams"]["together"]["api"] = "openai"
    routes["retry"] = {
        k: _sample(s) for k, s in schema["routes.yaml"]["properties"]["retry"]["properties"].items()
    }
    routes["circuit_breaker"] = {
        k: _sample(s)
        for k, s in schema["routes.yaml"]["properties"]["circuit_breaker"]["properties"].items()
    }
    tiers["settings"] = {
        k: _sample(s)
        for k, s in schema["tiers.yaml"]["properties"]["settings"]["properties"].items()
    }
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    load_config(tmp_path, env={})


def _props(schema: dict, name: str) -> dict:
    return schema["properties"][name]["additionalProperties"]["properties"]


def _sample(schema: dict) -> object:
    if "enum" in schema:
        return schema.get("default", schema["enum"][0])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        return ["cdn.example.com"] if items == {"type": "string"} else [429]
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), 10)
    return "TOGETHER_BASE_URL"


def test_cost_alerts_ship_with_the_plans_numbers() -> None:
    rules = load_config(ROOT, env={}).alerts.rules
    overall = [rule for rule in rules if rule.scope == "overall"]
    assert [(r.usd_per_day, r.usd_per_month) for r in overall] == [(5, 100)]
    assert all((r.usd_per_day or 0) <= 5 and (r.usd_per_month or 0) <= 100 for r in rules)


def test_the_model_tables_in_the_configuration_doc_are_the_shipped_files() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    begin, end = (
        text.index(model_tables.BEGIN) + len(model_tables.BEGIN),
        text.index(model_tables.END),
    )
    assert text[begin:end] == model_tables.shipped_tables()
    for gone in ("CodeLlama", "DeepSeek Coder", "405B"):
        assert gone not in text, gone
