"""`gateway serve` starting: a port in use is one error line before anything else is printed,
and the dev key of `--demo` is printed only once the gateway accepts connections."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.first_run.process import ROOT, Shell
from tests.support import free_port

BASE_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_error_line_before_any_banner(workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--demo",
                "--port",
                str(port),
                "--workers",
                workers,
            ],
            env=BASE_ENV,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""  # no dev key, no "Try it"
    assert result.stderr.splitlines() == [
        f"gateway: error: port {port} is in use (127.0.0.1:{port}): stop what listens there "
        "or choose another --port"
    ]


def test_an_address_that_cannot_be_bound_is_one_error_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--demo", "--host", "192.0.2.1"],
        env=BASE_ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )  # 192.0.2.1 (TEST-NET-1) is no address of this host
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "gateway: error: cannot listen on 192.0.2.1:8080: Cannot assign requested address"
    ]


def banner_then_connect(shell: Shell, port: int) -> httpx.Response:
    """Watch the output; the moment the dev key's "Try it" block is complete, connect once."""
    deadline = time.monotonic() + 120
    while "  python -c " not in shell.output():
        assert shell.process.poll() is None, shell.output()
        assert time.monotonic() < deadline, shell.output()
        time.sleep(0.005)
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_dev_key_is_printed_once_the_gateway_listens(tmp_path: Path, workers: str) -> None:
    port = free_port()
    command = f"{sys.executable} -m gateway serve --demo --port {port} --workers {workers}"
    shell = Shell(command, ROOT, BASE_ENV, tmp_path / "demo.log")
    try:
        assert banner_then_connect(shell, port).status_code == 200, shell.output()
        output = shell.output()
        assert output.index('"event":"listening"') < output.index("Dev key (tier free)")
        assert output.count("Dev key (tier free)") == 1
        assert "Traceback" not in output
    finally:
        shell.stop()


def test_port_0_prints_the_port_chosen(tmp_path: Path) -> None:
    shell = Shell(
        f"{sys.executable} -m gateway serve --demo --port 0", ROOT, BASE_ENV, tmp_path / "0.log"
    )
    try:
        key = shell.dev_key()
        while "  python -c " not in shell.output():
            time.sleep(0.01)
        url = shell.output().split("Try it:\n  curl ", 1)[1].split(" ", 1)[0]
        port = int(url.split("127.0.0.1:", 1)[1].split("/", 1)[0])
        assert port != 0
        answer = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200
    finally:
        shell.stop()
