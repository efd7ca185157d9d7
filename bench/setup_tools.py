"""Find (or install with apt-get) the tools the benchmark drives, and the gateway itself."""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# binary → Debian package that ships it
APT_PACKAGES: Mapping[str, str] = {
    "nginx": "nginx",
    "wrk": "wrk",
    "redis-server": "redis-server",
    "taskset": "util-linux",
}
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def which(binary: str) -> str | None:
    return shutil.which(binary, path=SEARCH_PATH)


def ensure_binaries(binaries: list[str]) -> dict[str, str]:
    """Binary name → absolute path; installs missing ones with apt-get when running as root."""
    missing = [name for name in binaries if which(name) is None]
    if missing:
        _apt_install(sorted({APT_PACKAGES[name] for name in missing}))
    paths: dict[str, str] = {}
    for name in binaries:
        path = which(name)
        if path is None:
            raise RuntimeError(f"{name} is missing and could not be installed")
        paths[name] = path
    return paths


def _apt_install(packages: list[str]) -> None:
    print(f"setup: installing {' '.join(packages)} with apt-get", flush=True)
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    _quiet([*prefix, "apt-get", "update", "-qq"])
    code = _quiet(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    )
    if code != 0:
        raise RuntimeError(f"apt-get install {' '.join(packages)} failed ({code})")


def _quiet(argv: list[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=False).returncode


def ensure_gateway(repo: Path) -> None:
    """The gateway package (and its console script's dependencies) in this interpreter."""
    if importlib.util.find_spec("gateway") is not None:
        return
    print(f"setup: pip install -e {repo}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(repo)], check=True)


def raise_fd_limit(wanted: int) -> int:
    """Raise the open-files limit (inherited by every process started later); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
