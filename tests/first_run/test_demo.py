"""The README's first command on a fresh machine: `gateway serve --demo` answers through the
openai SDK with no keys, no Redis and no network; with TOGETHER_API_KEY set the same command
uses Together."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.first_run.process import ROOT, Shell, copy_project
from tests.first_run.snippets import first_command
from tests.support import free_port

MESSAGES = [{"role": "user", "content": "Hello, gateway"}]


def check_demo_answers(base_url: str, key: str) -> None:
    client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="text", messages=MESSAGES)
    assert raw.headers["x-gateway-provider"] == "demo"
    reply = raw.parse()
    assert "demo upstream" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="auto", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content  # deterministic
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0

    completion = client.completions.create(model="code", prompt="def add(a, b):")
    assert "demo upstream" in completion.choices[0].text
    embeddings = client.embeddings.create(model="embedding", input=["one", "two"])
    assert len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 16
    owners = {m.id: m.owned_by for m in client.models.list().data}
    assert owners["demo-text"] == "demo"


def test_the_readme_first_command_serves_chat_in_a_clean_venv(tmp_path: Path) -> None:
    command = first_command()
    assert command.startswith("pip install . && gateway serve --demo"), command
    venv = tmp_path / "venv"
    # The venv sees the already installed dependencies (no index needed); `pip install .`
    # then installs this project into it, and its `gateway` comes first on PATH.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    project = copy_project(tmp_path / "checkout")
    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    shell = Shell(f"{command} --port {port}", project, env, tmp_path / "first.log")
    try:
        base_url = f"http://127.0.0.1:{port}"
        assert shell.wait_for(base_url + "/readyz").status_code == 200, shell.output()
        check_demo_answers(base_url, shell.dev_key())
        output = shell.output()
        assert (
            str(venv)
            in subprocess.run(
                ["bash", "-c", "command -v gateway"], env=env, capture_output=True, text=True
            ).stdout
        )
        assert "from openai import OpenAI" in output  # the ready-to-paste example
        assert (
            "tier free route text: usable demo-text; skipped llama-3.1-8b (TOGETHER_API_KEY unset)"
            in output
        )
        assert "Traceback" not in output
    finally:
        shell.stop()


def served(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Shell, str]:
    port = free_port()
    command = f"{sys.executable} -m gateway serve --port {port} {' '.join(args)}"
    base_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **(env or {})}
    shell = Shell(command, ROOT, base_env, tmp_path / f"gateway-{port}.log")
    base_url = f"http://127.0.0.1:{port}"
    shell.wait_for(base_url + "/healthz")
    return shell, base_url


def test_the_same_demo_command_uses_together_once_its_key_is_set(tmp_path, upstream) -> None:
    env = {"TOGETHER_API_KEY": "sk-together-test", "TOGETHER_BASE_URL": upstream.base_url}
    shell, base_url = served(tmp_path, "--demo", env=env)
    try:
        key = shell.dev_key()
        client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        for model in ("text", "code", "embedding"):
            raw = (
                client.embeddings.with_raw_response.create(model=model, input="x")
                if model == "embedding"
                else client.chat.completions.with_raw_response.create(
                    model=model, messages=MESSAGES
                )
            )
            assert raw.headers["x-gateway-provider"] == "together", model
        assert httpx.get(base_url + "/readyz").status_code == 200
        output = shell.output()
        assert (
            "tier free route text: usable llama-3.1-8b, mixtral-8x7b, local-llama-3.1-8b" in output
        )
    finally:
        shell.stop()


def test_without_demo_start_up_says_what_is_skipped_and_readiness_is_honest(tmp_path) -> None:
    shell, base_url = served(tmp_path, env={"GATEWAY_KEYS": "sk-test-key=free:me"})
    try:
        ready = httpx.get(base_url + "/readyz")
        assert ready.status_code == 503
        assert "free/image" in ready.json()["routes_without_targets"]
        assert "TOGETHER_API_KEY unset" in ready.json()["reason"]
        models = httpx.get(
            base_url + "/v1/models", headers={"authorization": "Bearer sk-test-key"}
        ).json()["data"]
        assert not any(m["owned_by"] == "demo" for m in models)  # no demo without --demo
        output = shell.output()
        assert (
            "tier free route text: usable local-llama-3.1-8b; skipped llama-3.1-8b "
            "(TOGETHER_API_KEY unset), mixtral-8x7b (TOGETHER_API_KEY unset)" in output
        )
        assert "tier free route image: usable none; skipped flux-schnell" in output
        assert "sk-demo-" not in output
    finally:
        shell.stop()


@pytest.mark.parametrize("readiness,status", [("strict", 503), ("lenient", 200)])
def test_readiness_setting(tmp_path, readiness, status) -> None:
    import yaml

    tiers = yaml.safe_load((ROOT / "tiers.yaml").read_text())
    tiers["settings"]["readiness"] = readiness
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    (tmp_path / "routes.yaml").write_text((ROOT / "routes.yaml").read_text())
    shell, base_url = served(tmp_path, "--config-dir", str(tmp_path))
    try:
        assert httpx.get(base_url + "/readyz").status_code == status
    finally:
        shell.stop()


def test_the_shipped_video_route_is_demo_served_without_a_runway_key(tmp_path) -> None:
    """The shipped premium tier routes video to Runway; with no RUNWAYML_API_SECRET, --demo
    serves the whole job cycle (create, poll, content) from the demo upstream."""
    from gateway.providers.demo_video import DEMO_VIDEO

    premium = "sk-test-premium-video-0123456789"
    shell, base_url = served(tmp_path, "--demo", env={"GATEWAY_KEYS": f"{premium}=premium:vid"})
    try:
        client = OpenAI(base_url=base_url + "/v1", api_key=premium, max_retries=0)
        raw = client.videos.with_raw_response.create(model="video", prompt="a kite", seconds="4")
        assert raw.headers["x-gateway-provider"] == "demo"
        job = raw.parse()
        assert job.status == "queued"
        done = client.videos.retrieve(job.id)
        assert done.status == "completed" and done.progress == 100
        assert client.videos.download_content(job.id).read() == DEMO_VIDEO
        assert "route video: usable demo-video; skipped runway-gen4.5" in shell.output()
    finally:
        shell.stop()
