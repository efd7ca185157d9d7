"""The OpenAI Agents SDK runs an agent with a function tool against /v1/responses.

``openai-agents`` wants a newer ``openai`` than the test stack pins, so it runs from a venv of
its own (created once per machine in the temp directory; skipped when it cannot be installed).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream

VENV = Path(tempfile.gettempdir()) / "gateway-tests-openai-agents"
AGENT = """
import asyncio, sys
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)

@function_tool
def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    return f"22C in {city}"

client = AsyncOpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
model = OpenAIResponsesModel(model="smart", openai_client=client)
agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=model)
print(asyncio.run(Runner.run(agent, "Weather in Paris?")).final_output)
"""


def agents_python() -> Path:
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import agents"]).returncode == 0:
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "openai-agents"], check=True, timeout=600
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"openai-agents could not be installed in a venv: {exc}")
    return python


@pytest.mark.slow
def test_an_agent_calls_its_tool(gateway: RunningGateway, upstream: MockUpstream) -> None:
    python = agents_python()
    run = subprocess.run(
        [python, "-c", AGENT, gateway.base_url, gateway.key()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith("Hello from mock/smart")
    turns = [r.json["messages"] for r in upstream.requests if r.json]
    assert len(turns) == 2
    assert turns[1][-1] == {
        "role": "tool",
        "tool_call_id": turns[1][-2]["tool_calls"][0]["id"],
        "content": "22C in Paris",
    }
