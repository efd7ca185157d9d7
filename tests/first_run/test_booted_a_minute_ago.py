"""The time-sensitive parts on a host booted a minute ago: their tests run again in a time
namespace whose monotonic clock reads about 60 s.

The monotonic clock starts near zero at boot. Code that waits until ``monotonic() - last``
passes an interval, with ``last`` starting at 0, never runs on a host up for less than that
interval (the ledger's maintenance waited for an hour of uptime, so 11 ledger tests failed on
fresh CI machines and passed on older ones). This runs those tests as a fresh machine would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.first_run.process import ROOT

INSIDE = "GATEWAY_TEST_TIME_NAMESPACE"  # set inside: the inner run does not start another
UPTIME_S = 60
# The tests of the periodic jobs timed on the monotonic clock: the ledger shipper's
# maintenance, upkeep and claims; the breakers' cool-downs and probes; the control plane's
# periodic jobs.
TIME_SENSITIVE = (
    "tests/ledger/test_shipper.py",
    "tests/hardening/test_breaker.py",
    "tests/control/test_plane.py",
)


def in_time_namespace(offset_s: int, *argv: str) -> list[str]:
    return ["unshare", "--time", f"--monotonic=-{offset_s}", *argv]


def host_monotonic() -> float:
    """The host's monotonic clock, also from inside a time namespace (a new namespace's
    offset is set against the host's clock, not added to this one's)."""
    offset = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/timens_offsets").read_text().splitlines():
            name, seconds, nanoseconds = line.split()
            if name == "monotonic":
                offset = int(seconds) + int(nanoseconds) / 1e9
    return time.monotonic() - offset


@pytest.mark.slow
def test_the_time_sensitive_tests_pass_with_the_monotonic_clock_at_a_minute() -> None:
    if os.environ.get(INSIDE):
        pytest.skip("already inside the time namespace")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    offset = max(0, int(host_monotonic()) - UPTIME_S)
    probe = subprocess.run(
        in_time_namespace(offset, sys.executable, "-c", "import time; print(time.monotonic())"),
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(
            "a time namespace is not permitted here (unshare --time needs CAP_SYS_ADMIN and "
            f"Linux 5.6 or newer): {probe.stderr.strip()}"
        )
    assert float(probe.stdout) < UPTIME_S + 30, probe.stdout
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    done = subprocess.run(
        in_time_namespace(offset, sys.executable, "-m", "pytest", "-q", *TIME_SENSITIVE),
        env={**os.environ, INSIDE: "1", "PYTHONPATH": path},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
