"""The shipped config passes `gateway check`; broken configs name file, key path and reason."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config.load import load_config
from gateway.config.reader import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def gateway_check(config_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config-dir", str(config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_shipped_config_passes_gateway_check():
    result = gateway_check(ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 4 upstreams")


def test_shipped_tiers_encode_the_plan():
    config = load_config(ROOT, env={})
    free = config.tiers["free"]
    assert set(free.routes) >= {"text", "code", "vision", "image", "embedding", "tts", "stt"}
    assert free.quota("text_generation").requests_per_day == 50
    assert free.quota("text_generation").tokens_per_day == 10000
    assert free.quota("code_generation").tokens_per_day == 15000
    assert free.quota("image_generation").requests_per_day == 10
    assert free.quota("audio_tts").minutes_per_day == 5
    assert free.quota("audio_stt").minutes_per_day == 10
    premium_text = config.tiers["premium"].routes["text"]
    assert premium_text[0].upstream.name == "together"
    assert premium_text[-1].upstream.name == "openai"  # cross-provider fallback
    assert config.tiers["enterprise"].quotas == {}


def write(tmp_path: Path, routes: dict, tiers: dict) -> Path:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return tmp_path


def shipped() -> tuple[dict, dict]:
    return (
        yaml.safe_load((ROOT / "routes.yaml").read_text()),
        yaml.safe_load((ROOT / "tiers.yaml").read_text()),
    )


def test_unknown_model_in_a_chain_is_reported_with_its_path(tmp_path):
    routes, tiers = shipped()
    tiers["tiers"]["free"]["routes"]["text"][1] = "mixtral-8x7b-typo"
    result = gateway_check(write(tmp_path, routes, tiers))
    assert result.returncode == 1
    assert (
        "tiers.yaml: tiers.free.routes.text[1]: unknown model 'mixtral-8x7b-typo'" in result.stderr
    )


def test_every_problem_is_reported_at_once(tmp_path):
    routes, tiers = shipped()
    routes["models"]["llama-3.1-8b"]["upstream"] = "nowhere"
    routes["models"]["sdxl"]["temprature"] = 1
    routes["retry"]["attempts"] = "two"
    tiers["tiers"]["premium"]["max_tokens"] = -5
    tiers["tiers"]["free"]["quotas"]["text_generaton"] = {"requests_per_day": 1}
    tiers["keys"] = [{"user": "x", "tier": "gold", "key_sha256": "abc"}]
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, routes, tiers), env={})
    problems = "\n".join(raised.value.problems)
    for expected in [
        "routes.yaml: models.llama-3.1-8b.upstream: unknown upstream 'nowhere'",
        "routes.yaml: models.sdxl.temprature: unknown key",
        "routes.yaml: retry.attempts: expected an integer, got a string",
        "tiers.yaml: tiers.premium.max_tokens: must be >= 1, got -5",
        "tiers.yaml: tiers.free.quotas.text_generaton: unknown key",
        "tiers.yaml: keys[0].tier: unknown tier 'gold'",
        "tiers.yaml: keys[0].key_sha256: expected 64 hex characters",
    ]:
        assert expected in problems


def test_invalid_yaml_and_missing_files_are_reported(tmp_path):
    (tmp_path / "routes.yaml").write_text("upstreams: [unclosed")
    result = gateway_check(tmp_path)
    assert result.returncode == 1
    assert "routes.yaml: invalid YAML" in result.stderr
    assert "tiers.yaml: file not found" in result.stderr


def test_env_overrides_base_url_and_supplies_keys(tmp_path):
    config = load_config(
        ROOT,
        env={
            "TOGETHER_BASE_URL": "http://127.0.0.1:9/v1",
            "TOGETHER_API_KEY": "tgp-secret",
            "GATEWAY_KEYS": "k1=free:alice,k2=premium",
        },
    )
    together = config.upstreams["together"]
    assert together.base_url == "http://127.0.0.1:9/v1"
    assert together.api_key is not None and "tgp-secret" not in repr(together)
    assert (config.keys[0].user, config.keys[0].tier) == ("alice", "free")
    assert all("k1" not in repr(k) for k in config.keys)


def test_gateway_keys_with_an_unknown_tier_is_an_error():
    with pytest.raises(ConfigError) as raised:
        load_config(ROOT, env={"GATEWAY_KEYS": "k1=platinum"})
    assert "GATEWAY_KEYS: entry 1" in raised.value.problems[0]


def test_passthrough_paths_and_upstream_limits_are_validated(tmp_path):
    routes, tiers = shipped()
    routes["passthrough"] = {
        "/videos/generations": ["video"],
        "/videos/../admin": ["video"],
        "/videos?x=1": ["video"],
        "/videos/*/remix": ["videos"],
    }
    tiers["settings"] = {"max_upstream_body_mb": 0, "max_upstream_headers": "many"}
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, routes, tiers), env={})
    problems = "\n".join(raised.value.problems)
    for expected in [
        "routes.yaml: passthrough./videos/../admin: expected a path like /videos/generations",
        "routes.yaml: passthrough./videos?x=1: expected a path like /videos/generations",
        "routes.yaml: passthrough./videos/*/remix[0]: must be one of",
        "tiers.yaml: settings.max_upstream_body_mb: must be >= 0.001, got 0",
        "tiers.yaml: settings.max_upstream_headers: expected an integer, got a string",
    ]:
        assert expected in problems
    assert "/videos/generations:" not in problems


def test_shipped_settings_bound_what_an_upstream_may_send():
    settings = load_config(ROOT, env={}).settings
    assert settings.max_upstream_body_bytes == 64 * 1024 * 1024
    assert settings.max_sse_event_bytes == 4 * 1024 * 1024
    assert (settings.max_upstream_header_bytes, settings.max_upstream_headers) == (65536, 100)
    assert load_config(ROOT, env={}).passthrough == {"/videos/generations": frozenset({"video"})}


def test_a_models_name_wins_over_another_models_upstream_id(tmp_path):
    """A name is the gateway's own: a model whose upstream id is spelled like another model's
    name, in a route listed first, does not take that name's requests."""
    routes, tiers = shipped()
    routes["models"]["alias-first"] = {
        "upstream": "together",
        "model": "llama-3.3-70b",
        "modality": "text",
        "price": {"input": 1, "output": 1},
    }
    text = tiers["tiers"]["free"]["routes"]["text"]
    tiers["tiers"]["free"]["routes"]["text"] = ["alias-first", *text, "llama-3.3-70b"]
    config = load_config(write(tmp_path, routes, tiers), env={})
    lookup = config.tiers["free"].lookup
    assert lookup["llama-3.3-70b"][0].name == "llama-3.3-70b"
    assert lookup["alias-first"][0].name == "alias-first"
