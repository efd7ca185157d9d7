"""The README's first command in a venv that sees nothing of this machine's packages: `pip
install .` takes the core dependencies from the package index (no extras), then `gateway
serve --demo` answers a chat, a stream and a tool call through the openai SDK.

test_demo's venv shares the system site-packages (fast, no index needed), where every extra is
already installed: a core module importing an extra passes there and fails for a user. This
one is slow (one install, its wheels from pip's cache after the first run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from openai import OpenAI

from tests.first_run.process import Shell, copy_project
from tests.first_run.snippets import first_command
from tests.support import free_port

INSTALL_TIMEOUT_S = 900  # a cold pip cache downloads every core dependency
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def pip_environment() -> dict[str, str]:
    """pip's own settings here (certificates, index, timeouts) and a cache that outlives the
    test, so that only the first run downloads."""
    kept = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.endswith("_proxy")}
    cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    return {**kept, "PIP_CACHE_DIR": cache}


@pytest.mark.slow
def test_the_readme_first_command_in_an_isolated_venv(tmp_path: Path) -> None:
    command = first_command()
    assert command.startswith("pip install . && gateway serve --demo"), command
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no system packages
    project = copy_project(tmp_path / "checkout")
    port = free_port()
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        **pip_environment(),
    }
    started = time.monotonic()
    shell = Shell(f"{command} --port {port}", project, env, tmp_path / "first.log")
    try:
        base_url = f"http://127.0.0.1:{port}"
        ready = shell.wait_for(base_url + "/readyz", timeout=INSTALL_TIMEOUT_S)
        assert ready.status_code == 200, shell.output()
        print(f"install and start: {time.monotonic() - started:.1f} s")
        isolated = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import asyncpg"], capture_output=True
        )
        assert isolated.returncode != 0, "the venv sees an extra: it is not isolated"

        client = OpenAI(base_url=base_url + "/v1", api_key=shell.dev_key(), max_retries=0)
        reply = client.chat.completions.create(
            model="text", messages=[{"role": "user", "content": "Hello"}]
        )
        assert "demo upstream" in (reply.choices[0].message.content or "")

        chunks = list(
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "Hello"}], stream=True
            )
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == reply.choices[0].message.content

        tool = {"name": "get_weather", "description": "The weather now", "parameters": WEATHER}
        called = client.chat.completions.create(
            model="text",
            messages=MESSAGES,
            tools=[{"type": "function", "function": tool}],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        choice = called.choices[0]
        assert choice.message.tool_calls, choice
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)
        assert choice.finish_reason == "tool_calls"
        assert "Traceback" not in shell.output()
    finally:
        shell.stop()
