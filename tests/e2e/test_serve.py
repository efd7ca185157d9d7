"""`gateway serve` as a real process: workers, the image's command, SIGTERM, logs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import DEFAULT_ROUTES, MOCK_KEY, free_port, routes_doc, tiers_doc
from tests.test_deploy import dockerfile_cmd

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-serve-test-key-42"
MESSAGES = [{"role": "user", "content": "secret prompt text"}]


class Served:
    def __init__(self, argv, env, tmp_path, ready="/readyz"):
        self.ready = ready
        self.log = tmp_path / f"gateway-{time.monotonic_ns()}.log"
        self.port = int(argv[argv.index("--port") + 1])
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _wait(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + self.ready).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not become ready:\n" + self.log.read_text())

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def log_lines(self):
        return [
            orjson.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")
        ]


@pytest.fixture
def serve(tmp_path, upstream):
    started = []
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    routes = {**DEFAULT_ROUTES, "text": ["ok", "ok-b", "slow"]}
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc({"free": {"routes": routes}})))

    def start(*extra, argv=None, env=None, ready="/readyz"):
        argv = argv or [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            *extra,
        ]
        served = Served(
            argv,
            {"MOCK_KEY": MOCK_KEY, "GATEWAY_KEYS": f"{KEY}=free:alice", **(env or {})},
            tmp_path,
            ready,
        )
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def chat(url, **body):
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "text", "messages": MESSAGES, **body},
        timeout=30,
    )


def total_requests(url):
    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_requests":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def test_two_workers_report_exact_totals_on_every_scrape(serve):
    served = serve("--workers", "2")
    with httpx.Client() as client:
        for _ in range(60):
            response = client.post(
                served.url + "/v1/chat/completions",
                headers={"authorization": f"Bearer {KEY}"},
                json={"model": "text", "messages": MESSAGES},
            )
            assert response.status_code == 200
    pids = set()
    for _ in range(10):  # scrapes land on either worker; all must agree
        assert total_requests(served.url) == 60
    for line in served.log_lines():
        if line.get("event") == "request":
            pids.add(line.get("request_id"))
    assert len(pids) == 60


def test_the_image_command_serves_the_shipped_config(tmp_path, serve):
    port = free_port()
    argv = dockerfile_cmd({"PORT": str(port)})
    assert argv[:2] == ["gateway", "serve"]
    argv[argv.index("--config-dir") + 1] = str(ROOT)  # the image copies these files to /app
    served = serve(argv=argv, env={"GATEWAY_KEYS": f"{KEY}=free:alice"}, ready="/healthz")
    # no upstream key: routes served only by Together have no target, and readiness says so
    not_ready = httpx.get(served.url + "/readyz")
    assert not_ready.status_code == 503
    assert "TOGETHER_API_KEY unset" in not_ready.json()["reason"]
    models = httpx.get(
        served.url + "/v1/models", headers={"authorization": f"Bearer {KEY}"}
    ).json()["data"]
    assert {"text", "llama-3.1-8b"} <= {m["id"] for m in models}
    # no upstream key is set, so only the local (Ollama) model is tried, and nothing listens
    answer = chat(served.url)
    assert answer.status_code == 502
    assert "llama-3.1-8b: no upstream credentials" in answer.json()["error"]["message"]
    assert "local-llama-3.1-8b: connect_error" in answer.json()["error"]["message"]


def test_sigterm_lets_an_open_stream_finish(serve):
    served = serve()
    body = {"model": "slow", "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", served.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        served.process.send_signal(signal.SIGTERM)
        rest = b"".join(chunks)
    assert (first + rest).rstrip().endswith(b"data: [DONE]")
    assert b'"error"' not in rest
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
    assert served.process.wait(timeout=20) in (0, -signal.SIGTERM)


def test_one_structured_log_line_per_request_without_prompts_or_keys(serve):
    served = serve()
    assert chat(served.url).status_code == 200
    assert chat(served.url, model="nope").status_code == 404
    served.stop()
    text = served.log.read_text()
    assert "secret prompt text" not in text and KEY not in text and MOCK_KEY not in text
    requests = [line for line in served.log_lines() if line.get("event") == "request"]
    assert [line["status"] for line in requests] == [200, 404]
    first = requests[0]
    assert first["model"] == "ok" and first["provider"] == "mock" and first["tier"] == "free"
    assert first["user"] != "alice" and len(first["user"]) == 16  # hashed
    assert first["prompt_tokens"] == 4 and first["attempts"] == 1
    assert "latency_ms" in first and first["fallback"] is False
