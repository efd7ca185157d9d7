"""Rollout weights under `gateway serve --demo`: the admin API takes the models tiers.yaml lists
(the demo model stands in for them), and weights in tiers.yaml do not break the demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import yaml

from tests.first_run.process import ROOT, Shell
from tests.support import free_port

ADMIN = "admin-token-for-the-demo-weights-test"
MESSAGES = [{"role": "user", "content": "Hello"}]


def demo(tmp_path: Path, config_dir: Path = ROOT) -> tuple[Shell, str, str]:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GATEWAY_ADMIN_TOKEN": ADMIN}
    command = f"{sys.executable} -m gateway serve --demo --port {port} --config-dir {config_dir}"
    shell = Shell(command, ROOT, env, tmp_path / "demo.log")
    base_url = f"http://127.0.0.1:{port}"
    shell.wait_for(base_url + "/healthz")
    return shell, base_url, shell.dev_key()


def weights(base_url: str, method: str = "GET", body: object = None) -> httpx.Response:
    return httpx.request(
        method,
        base_url + "/v1/admin/tiers/free/weights",
        headers={"authorization": f"Bearer {ADMIN}"},
        json=body,
    )


def chat(base_url: str, key: str) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "text", "messages": MESSAGES},
    )


def test_weights_take_the_models_tiers_yaml_lists(tmp_path: Path) -> None:
    listed = yaml.safe_load((ROOT / "tiers.yaml").read_text())["tiers"]["free"]["routes"]["text"]
    shell, base_url, key = demo(tmp_path)
    try:
        put = weights(base_url, "PUT", {"routes": {"text": {listed[0]: 90, listed[1]: 10}}})
        assert put.status_code == 200, put.text
        assert put.json() == {
            "tier": "free",
            "source": "run-time",
            "routes": {"text": {listed[0]: 90.0, listed[1]: 10.0, listed[2]: 0.0}},
        }
        assert weights(base_url).json() == put.json()
        refused = weights(base_url, "PUT", {"routes": {"text": {"demo-text": 1}}})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "routes.text: 'demo-text' is not in its chain."
        answer = chat(base_url, key)  # no key for the listed models: the demo serves
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-provider"] == "demo"
        assert weights(base_url, "DELETE").json()["source"] == "config"
    finally:
        shell.stop()


def test_weights_in_tiers_yaml_leave_the_demo_answering(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "routes.yaml").write_text((ROOT / "routes.yaml").read_text())
    tiers = yaml.safe_load((ROOT / "tiers.yaml").read_text())
    tiers["tiers"]["free"]["routes"]["text"] = [
        {"model": "llama-3.1-8b", "weight": 10},
        {"model": "mixtral-8x7b", "weight": 90},
        "local-llama-3.1-8b",
    ]
    (config / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    shell, base_url, key = demo(tmp_path, config)
    try:
        answer = chat(base_url, key)  # was a 500: a weight per listed entry, one demo model
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-provider"] == "demo"
        shown = weights(base_url).json()
        assert shown["routes"]["text"] == {
            "llama-3.1-8b": 10.0,
            "mixtral-8x7b": 90.0,
            "local-llama-3.1-8b": 0.0,
        }
        assert "Traceback" not in shell.output()
    finally:
        shell.stop()
