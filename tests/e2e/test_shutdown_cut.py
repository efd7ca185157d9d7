"""Issue 23 item 16: a stream still open when the shutdown grace period ends gets an in-band
error and ``[DONE]``, is recorded as the server's cut (503), and logs no traceback."""

import signal
import sys

import httpx
import orjson
import yaml

from tests.e2e.test_serve import KEY, MESSAGES, Served
from tests.support import MOCK_KEY, free_port, routes_doc, tiers_doc


def test_a_stream_past_the_grace_period_ends_in_band(tmp_path, upstream):
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    tiers = tiers_doc({"free": {"routes": {"text": ["endless"]}}}, settings={"shutdown_grace_s": 1})
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    env = {"MOCK_KEY": MOCK_KEY, "GATEWAY_KEYS": f"{KEY}=free:alice"}
    served = Served([*argv, "--port", str(free_port())], env, tmp_path)
    try:
        body = {"model": "text", "messages": MESSAGES, "stream": True}
        with httpx.stream(
            "POST",
            served.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
            timeout=30,
        ) as response:
            chunks = response.iter_raw()
            first = next(chunks)
            served.process.send_signal(signal.SIGTERM)
            rest = b"".join(chunks)  # a cut at TCP level would raise here
        events = [e for e in (first + rest).split(b"\n\n") if e.strip()]
        assert events[-1] == b"data: [DONE]", events[-3:]
        error = orjson.loads(events[-2].removeprefix(b"data: "))["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "server_shutting_down", error
        assert served.process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        served.stop()
    text = served.log.read_text()
    assert "Exception in ASGI application" not in text, text
    assert "Traceback" not in text, text
    requests = [line for line in served.log_lines() if line.get("event") == "request"]
    assert [line["status"] for line in requests] == [503], requests
