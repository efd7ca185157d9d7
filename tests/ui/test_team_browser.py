"""A team admin in headless Chromium (issue 30): signs in with a team token, lands on the team's
pages, creates a key for a member (used through the openai SDK), then revokes it; a team viewer
sees the same pages with every change disabled. Against `gateway serve` on a real redis-server."""

from __future__ import annotations

import openai
import pytest

from tests.scale.gateways import Gateway
from tests.ui.conftest import Browser
from tests.ui.test_dashboard import admin_api, chat

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("chromedriver"), reason="chromium-driver is not installed"
)
TEAM_PAGES = ("", "/keys", "/members", "/usage", "/statement")


@pytest.fixture(scope="module")
def team_tokens(served: Gateway) -> dict[str, str]:
    """Organization ``acme`` with team ``ml`` (ann, bob); a team admin and a team viewer."""
    org = admin_api(served, "POST", "/v1/admin/orgs", json={"id": "acme", "timezone": "UTC"})
    assert org.status_code == 201, org.text
    team = {"id": "ml", "org": "acme", "tier": "free", "members": ["ann", "bob"],
            "limits": {"requests": {"day": 1000}}}  # fmt: skip
    assert admin_api(served, "POST", "/v1/admin/teams", json=team).status_code == 201
    found = {}
    for role in ("team_admin", "team_viewer"):
        made = admin_api(served, "POST", "/v1/admin/teams/ml/tokens", json={"role": role})
        assert made.status_code == 201, made.text
        found[role] = made.json()["token"]
    return found


def test_a_team_admin_creates_then_revokes_a_key(
    served: Gateway, browser: Browser, team_tokens: dict[str, str]
) -> None:
    tokens = team_tokens
    driver = browser.driver
    driver.set_window_size(1280, 800)
    browser.sign_in(tokens["team_admin"])
    assert driver.current_url.endswith("/ui/teams/ml")

    browser.visit("/ui/teams/ml/keys", "team-keys", ready="body[data-ready]")
    form = driver.find_element("id", "create-key")
    form.find_element("css selector", "select[name=user] option[value=bob]").click()
    form.find_element("name", "name").send_keys("bob's laptop")
    form.find_element("name", "rpm").send_keys("60")
    driver.find_element("id", "create-key-submit").click()
    browser.wait(lambda: driver.find_element("id", "new-secret").text.startswith("sk-"))
    secret = driver.find_element("id", "new-secret").text
    browser.wait(lambda: "bob's laptop" in driver.find_element("id", "keys").text)
    browser.check("team-key-created")
    chat(served, secret)

    row = driver.find_element("xpath", "//table[@id='keys']//tr[td[4]=\"bob's laptop\"]")
    key_id = row.find_element("xpath", "./td[1]").text
    assert key_id in admin_api(served, "GET", "/v1/admin/teams/ml/keys").text
    row.find_element("xpath", ".//button[text()='Revoke']").click()
    browser.wait(lambda: "revoked" in driver.find_element("id", "notice").text)
    with pytest.raises(openai.AuthenticationError):
        chat(served, secret)
    audit = admin_api(served, "GET", "/v1/admin/audit?log=operator").text
    assert "team_key.create" in audit and "team_key.revoke" in audit

    for width, height in ((1280, 800), (390, 844)):
        driver.set_window_size(width, height)
        for suffix in TEAM_PAGES:
            name = "team" + suffix.replace("/", "-")
            browser.visit("/ui/teams/ml" + suffix, name, ready="body[data-ready]")
    driver.set_window_size(1280, 800)
    driver.get(browser.base + "/ui/overview")  # an operator page: the UI's 403
    assert "scoped to a team" in browser.wait_for("#refused").text
    driver.get_log("browser")  # the 403 itself is logged as a failed load
    browser.sign_out()


def test_a_team_viewer_changes_nothing(
    served: Gateway, browser: Browser, team_tokens: dict[str, str]
) -> None:
    key = {"user": "ann", "tier": "free", "team": "ml", "name": "ann's"}
    made = admin_api(served, "POST", "/v1/admin/keys", json=key)
    assert made.status_code == 201, made.text
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(team_tokens["team_viewer"])
    browser.visit("/ui/teams/ml/keys", "team-keys-viewer", ready="body[data-ready]")
    assert not browser.driver.find_element("id", "create-key-submit").is_enabled()
    row = browser.driver.find_element("xpath", "//table[@id='keys']//tr[td[4]=\"ann's\"]")
    for button in row.find_elements("tag name", "button"):
        assert not button.is_enabled(), button.text
    status, _ = browser.fetch("/v1/admin/teams/ml/keys")
    assert status == 200
    browser.sign_out()
