"""A `gateway serve` process on a real redis-server, and headless Chromium driven by Selenium.

Screenshots go to tests/output/screenshots/ (git-ignored). ``Browser.visit`` opens a page,
waits for its script to settle, saves a screenshot, and fails on any browser console error
and on main content wider than the window.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import Gateway, gateways
from tests.support import DEFAULT_ROUTES, routes_doc, tiers_doc

SCREENSHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
ADMIN = "dashboard-admin-token-0123456789"
USER_KEY = "sk-dashboard-free-user-0123456789"
USER = "dash-user"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def write_config(directory: Path, upstream_url: str) -> Path:
    tiers = tiers_doc(
        {
            "free": {
                "routes": DEFAULT_ROUTES,
                "quotas": {"text_generation": {"requests_per_day": 50, "tokens_per_day": 100000}},
            },
            "pro": {"routes": DEFAULT_ROUTES},
        },
        flags={"dashboard_demo": {"enabled": False, "description": "A flag for the UI test"}},
    )
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream_url)))
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return directory


@pytest.fixture(scope="module")
def served(mock_upstream_server: MockUpstream, redis_server: RedisServer) -> Iterator[Gateway]:
    redis_server.start()
    redis_server.flushall()
    with tempfile.TemporaryDirectory() as directory:
        env = {
            "REDIS_URL": redis_server.url,
            "GATEWAY_ADMIN_TOKEN": ADMIN,
            "GATEWAY_KEYS": f"{USER_KEY}=free:{USER}",
        }
        with gateways(1, write_config(Path(directory), mock_upstream_server.base_url), env) as (
            gateway,
        ):
            yield gateway


@dataclass
class Browser:
    driver: Any
    base: str
    shots: list[str] = field(default_factory=list)

    def visit(self, path: str, name: str, *, ready: str = "main") -> None:
        self.driver.get(self.base + path)
        self.wait(lambda: self.driver.execute_script("return document.readyState") == "complete")
        self.wait_for(ready)
        self.settle()
        self.check(name)

    def settle(self) -> None:
        """Wait until the page's fetches are done (no request in flight for a moment)."""
        script = (
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.responseEnd === 0).length"
        )
        self.wait(lambda: self.driver.execute_script(script) == 0)
        time.sleep(0.15)

    def check(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        width = self.driver.execute_script("return window.innerWidth")
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}-{width}.png"))
        self.shots.append(name)
        self.assert_no_console_errors(name)
        overflow = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert overflow[0] <= overflow[1], f"{name}: content {overflow[0]} px > {overflow[1]} px"

    def assert_no_console_errors(self, name: str) -> None:
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"{name}: console errors {errors}"

    def wait_for(self, css: str, timeout: float = 10) -> Any:
        from selenium.webdriver.common.by import By

        found: list[Any] = []

        def present() -> bool:
            found[:] = self.driver.find_elements(By.CSS_SELECTOR, css)
            return bool(found)

        self.wait(present, timeout)
        return found[0]

    def wait(self, check: Callable[[], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out waiting in the browser"
            time.sleep(0.05)

    def sign_in(self, token: str) -> None:
        self.visit("/ui/login", "login", ready="#token")
        self.driver.find_element("id", "token").send_keys(token)
        self.driver.find_element("id", "sign-in").click()
        self.wait(lambda: "/ui/login" not in self.driver.current_url)

    def sign_out(self) -> None:
        self.driver.find_element("id", "sign-out").click()
        self.wait(lambda: "/ui/login" in self.driver.current_url)

    def fetch(self, path: str, *, binary: bool = False) -> Any:
        """GET ``path`` from the page (with its session cookie): text, or bytes as a list."""
        script = (
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {credentials: 'same-origin'}).then(r => "
            + ("r.arrayBuffer().then(b => done([r.status, Array.from(new Uint8Array(b))]))"
               if binary else "r.text().then(t => done([r.status, t]))")
            + ").catch(e => done([0, String(e)]));"
        )  # fmt: skip
        return self.driver.execute_async_script(script, path)


@pytest.fixture(scope="module")
def browser(served: Gateway) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gw-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,800")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(20)
    try:
        yield Browser(driver, served.url)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
