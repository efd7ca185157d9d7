"""`gateway models check`: configured ids an upstream does not list, and differing prices."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.providers.catalog import MISSING, PRICE, UNCHECKED, check_catalog, parse_list, report
from tests.mock_upstream import running_mock_upstream
from tests.support import ThreadedServer, build_config

ROOT = Path(__file__).resolve().parents[2]
# Together's list: a bare array, pricing in USD per 1M tokens
TOGETHER_LIST = [
    {
        "id": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "object": "model",
        "type": "chat",
        "pricing": {"hourly": 0, "input": 0.88, "output": 0.88, "base": 0, "finetune": 0},
    },
    {
        "id": "deepseek-ai/DeepSeek-V3",
        "object": "model",
        "type": "chat",
        "pricing": {"hourly": 0, "input": 1.25, "output": 1.25, "base": 0, "finetune": 0},
    },
]


def config_for(base_url: str, models: dict[str, dict[str, object]]) -> dict[str, object]:
    return {
        "upstreams": {"together": {"base_url": base_url, "api_key_env": "TOGETHER_API_KEY"}},
        "models": {
            name: {"upstream": "together", "modality": "text", **spec}
            for name, spec in models.items()
        },
    }


TIERS = {"tiers": {"free": {"routes": {"text": ["llama"]}}}}
ENV = {"TOGETHER_API_KEY": "sk-together-test-0123456789"}


def run_check(routes: dict[str, object], env: dict[str, str] = ENV) -> list:
    config = build_config(routes, TIERS, env)

    async def go() -> list:
        async with httpx.AsyncClient(timeout=5) as client:
            return await check_catalog(config, client)

    return asyncio.run(go())


def test_missing_ids_against_the_mock_upstreams_list() -> None:
    with running_mock_upstream(models_format="together") as mock:
        routes = config_for(
            mock.base_url,
            {
                "llama": {"model": "meta-llama/Llama-3.3-70B-Instruct-Turbo"},
                "old": {"model": "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo"},
            },
        )
        findings = run_check(routes)
        assert [(f.kind, f.model) for f in findings] == [(MISSING, "old")]
        assert report(findings)[1] == 1
        assert mock.requests[-1].headers["authorization"] == f"Bearer {ENV['TOGETHER_API_KEY']}"


def test_prices_that_differ_from_the_list_are_reported() -> None:
    async def models(_request: object) -> JSONResponse:
        return JSONResponse(TOGETHER_LIST)

    server = ThreadedServer(Starlette(routes=[Route("/v1/models", models)])).start()
    try:
        routes = config_for(
            server.url + "/v1",
            {
                "llama": {
                    "model": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                    "price": {"input": 0.88, "output": 0.88},
                },
                "deepseek": {
                    "model": "deepseek-ai/DeepSeek-V3",
                    "price": {"input": 1.25, "output": 2.0},
                },
            },
        )
        findings = run_check(routes)
    finally:
        server.stop()
    assert [(f.kind, f.model) for f in findings] == [(PRICE, "deepseek")]
    assert "output price 2 in routes.yaml, 1.25 listed" in findings[0].detail
    assert report(findings)[1] == 0  # prices alone: reported, exit 0


def test_an_upstream_without_its_key_is_reported_unchecked() -> None:
    routes = config_for("http://127.0.0.1:9/v1", {"llama": {"model": "x"}})
    findings = run_check(routes, env={})
    assert [(f.kind, f.detail) for f in findings] == [(UNCHECKED, "TOGETHER_API_KEY is unset")]
    assert report(findings)[1] == 2


def test_both_list_shapes_parse() -> None:
    openai_shape = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
    assert set(parse_list(openai_shape)) == {"gpt-4o-mini"}
    together = parse_list(TOGETHER_LIST)
    assert together["deepseek-ai/DeepSeek-V3"].output == 1.25


def test_the_command_exits_1_on_a_missing_id(tmp_path: Path) -> None:
    with running_mock_upstream(models_format="together") as mock:
        routes = config_for(mock.base_url, {"llama": {"model": "gone/Model-1"}})
        (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
        (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(TIERS))
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "models", "check", "--config-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env={**os.environ, **ENV},
            cwd=ROOT,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert "missing: together llama: 'gone/Model-1' is not in the upstream's model list" in (
        result.stdout
    )
    assert ENV["TOGETHER_API_KEY"] not in result.stdout + result.stderr
