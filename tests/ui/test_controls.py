"""The dashboard's controls in headless Chromium against `gateway serve` on a real redis-server.

The upstream is a real local server that records the key each request carries, so the switch
for users' own keys and the one-step rotation of a system key are checked by what the upstream
is sent, not by what the page says. Also: editors for every tier and user quota limit (and the API's
errors shown in the page), quota requests for any limit, the Users list, the own-key form on
/ui/me off per provider, human reset times, four-decimal money, the overview at 1400 px, and
a viewer's (or a CSRF-less) write refused on each new control.
"""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from gateway.control.secrets_at_rest import KEY_ENV, fingerprint
from tests.control.key_upstream import KeyUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import Gateway, gateways
from tests.support import DEFAULT_ROUTES, MOCK_KEY, routes_doc, tiers_doc
from tests.ui.conftest import ADMIN, USER, USER_KEY, Browser

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("chromedriver"), reason="chromium-driver is not installed"
)
MASTER = base64.b64encode(bytes(range(32))).decode()
OWN_KEY = "sk-dash-user-own-mock-key-1"
ROTATED = ("sk-system-first-0001", "sk-system-second-0002")
MONEY = re.compile(r"\$[\d,]+(?:\.\d+)?")


@pytest.fixture(scope="module")
def upstream() -> Iterator[KeyUpstream]:
    found = KeyUpstream().start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def served(upstream: KeyUpstream, redis_server: RedisServer) -> Iterator[Gateway]:
    """Overrides tests/ui/conftest.py's: the recording upstream and a master key."""
    redis_server.start()
    redis_server.flushall()
    tiers = tiers_doc(
        {
            "free": {
                "routes": DEFAULT_ROUTES,
                "quotas": {"text_generation": {"requests_per_day": 50, "tokens_per_day": 100000}},
            },
            "pro": {"routes": DEFAULT_ROUTES},
        }
    )
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory)
        (config / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
        (config / "tiers.yaml").write_text(yaml.safe_dump(tiers))
        env = {
            "REDIS_URL": redis_server.url,
            "GATEWAY_ADMIN_TOKEN": ADMIN,
            "GATEWAY_KEYS": f"{USER_KEY}=free:{USER}",
            KEY_ENV: MASTER,
            "OTHER_KEY": "",
        }
        with gateways(1, config, env) as (gateway,):
            yield gateway


def api(served: Gateway, method: str, path: str, token: str = ADMIN, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.request(method, served.url + path, headers=headers, timeout=10, **kw)


def chat(served: Gateway, key: str = USER_KEY, model: str = "ok") -> None:
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    assert answer.choices[0].message.content


def text(browser: Browser, element_id: str) -> str:
    return str(browser.driver.find_element("id", element_id).text)


def notice_says(browser: Browser, words: str) -> None:
    browser.wait(lambda: words in text(browser, "notice"))


def write_from_page(browser: Browser, method: str, path: str, body: Any, csrf: bool = True) -> int:
    """A write sent from the signed-in page with its session cookie (and CSRF token)."""
    script = (
        "const [method, path, body, csrf, done] = arguments;"
        "const headers = {'content-type': 'application/json'};"
        "if (csrf) headers['x-csrf-token'] ="
        " document.querySelector('meta[name=csrf-token]').content;"
        "fetch(path, {method, credentials: 'same-origin', headers, body: JSON.stringify(body)})"
        ".then(r => done(r.status)).catch(e => done(0));"
    )
    status = int(browser.driver.execute_async_script(script, method, path, body, csrf))
    browser.driver.get_log("browser")  # a refused write is logged by the browser: expected
    return status


def row_cells(browser: Browser, table: str, first: str) -> list[str]:
    row = browser.driver.find_element("xpath", f"//table[@id='{table}']//tr[td[1]='{first}']")
    return [td.text for td in row.find_elements("tag name", "td")]


def test_providers_switch_rotation_and_no_key(
    browser: Browser, served: Gateway, upstream: KeyUpstream
) -> None:
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(ADMIN)
    browser.visit("/ui/providers", "providers-controls", ready="#allow-user-keys-mock")
    # "other" has no key at all (OTHER_KEY empty, nothing stored): said so, per model too
    assert row_cells(browser, "upstream-keys", "other")[1] == "no key"
    assert row_cells(browser, "upstream-keys", "mock")[1] == "env key"
    assert row_cells(browser, "providers", "other-ok")[2] == "no key"
    assert row_cells(browser, "providers", "ok")[2] == "env key"

    # the switch for users' own keys, per upstream, writes the run-time setting
    switch = browser.driver.find_element("id", "allow-user-keys-mock")
    assert not switch.is_selected()
    switch.click()
    notice_says(browser, "Users' own keys for mock: allowed.")
    settings = api(served, "GET", "/v1/admin/settings").json()
    assert settings["user_keys_allowed"] == {"mock": True, "other": False}
    stored = api(served, "PUT", "/v1/me/upstream-keys/mock", USER_KEY, json={"key": OWN_KEY})
    assert stored.status_code == 200, stored.text
    refused = api(served, "PUT", "/v1/me/upstream-keys/other", USER_KEY, json={"key": OWN_KEY})
    assert refused.status_code == 403
    upstream.clear()
    chat(served)
    assert upstream.keys_seen() == [OWN_KEY]
    browser.visit("/ui/providers", "providers-allowed", ready="#allow-user-keys-mock")
    switch = browser.driver.find_element("id", "allow-user-keys-mock")
    assert switch.is_selected()
    switch.click()
    notice_says(browser, "Users' own keys for mock: off.")
    chat(served)
    assert upstream.keys_seen()[-1] == MOCK_KEY  # the user's key is no longer used

    # rotate the system key in one step: the new key is used, the old one never again
    for new in ROTATED:
        browser.visit("/ui/providers", "providers-rotate", ready="#rotate-key-mock")
        browser.driver.find_element("id", "rotate-key-mock").send_keys(new)
        browser.driver.find_element("id", "rotate-mock").click()
        notice_says(browser, f"System key for mock rotated: now {fingerprint(new)}.")
        upstream.clear()
        chat(served)
        chat(served)
        assert upstream.keys_seen() == [new, new]
        page = browser.driver.page_source
        assert new not in page and fingerprint(new) in page
        assert row_cells(browser, "upstream-keys", "mock")[1] == "stored key"
    listing = api(served, "GET", "/v1/admin/upstreams/mock/keys").json()
    assert [k["fingerprint"] for k in listing["keys"]] == [fingerprint(ROTATED[1])]
    audit = api(served, "GET", "/v1/admin/audit").text
    assert all(secret not in audit for secret in ROTATED)
    browser.sign_out()


def test_quota_editors_for_every_limit(browser: Browser, served: Gateway) -> None:
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(ADMIN)
    browser.visit("/ui/quotas", "quotas-all-limits", ready="#save-free-text_generation")
    values = {
        "requests_per_day": "40",
        "tokens_per_day": "90000",
        "tokens_per_request": "2000",
        "minutes_per_day": "12.5",
    }
    for name, value in values.items():
        field = browser.driver.find_element("id", f"{name}-free-text_generation")
        field.clear()
        field.send_keys(value)
    browser.driver.find_element("id", "save-free-text_generation").click()
    notice_says(browser, "Quota free/text_generation saved.")
    quota = api(served, "GET", "/v1/admin/tiers/free/quotas/text_generation").json()
    assert quota["source"] == "runtime"
    assert quota["quota"] == {
        "requests_per_day": 40,
        "tokens_per_day": 90000,
        "tokens_per_request": 2000,
        "minutes_per_day": 12.5,
    }
    browser.wait(
        lambda: browser.driver.find_element("id", "tokens_per_request-free-text_generation")
        .get_attribute("value") == "2000"
    )  # fmt: skip

    # a value the API refuses: its OpenAI-shaped message shown, the field marked, nothing saved
    field = browser.driver.find_element("id", "tokens_per_request-free-text_generation")
    field.clear()
    field.send_keys("2.5")
    browser.driver.find_element("id", "save-free-text_generation").click()
    browser.wait(lambda: "whole number" in text(browser, "notice"))
    assert "'tokens_per_request' must be a whole number" in text(browser, "notice")
    assert "bad" in (browser.driver.find_element("id", "notice").get_attribute("class") or "")
    assert "invalid" in (field.get_attribute("class") or "")
    browser.driver.get_log("browser")  # the refused PUT (400) is logged: expected
    again = api(served, "GET", "/v1/admin/tiers/free/quotas/text_generation").json()
    assert again["quota"]["tokens_per_request"] == 2000
    api(served, "DELETE", "/v1/admin/tiers/free/quotas/text_generation")
    browser.sign_out()


def test_a_users_custom_quota_editor_takes_every_limit(browser: Browser, served: Gateway) -> None:
    """The Users page's own editor (a user's override), not only the tier's: tokens per
    request and audio minutes per day are written, and shown in the user's quota table."""
    from selenium.webdriver.support.ui import Select

    browser.driver.set_window_size(1280, 800)
    browser.sign_in(ADMIN)
    browser.visit(f"/ui/users?user={USER}", "users-custom-quota", ready="#user-quotas tbody tr")
    assert "The tier's quotas apply." in text(browser, "user-quotas")
    form = browser.driver.find_element("id", "user-quota")
    Select(form.find_element("name", "capability")).select_by_visible_text("text_generation")
    form.find_element("name", "tokens_per_request").send_keys("1500")
    form.find_element("name", "minutes_per_day").send_keys("7.5")
    form.find_element("css selector", "button[type=submit]").click()
    notice_says(browser, "Quota saved.")
    override = api(served, "GET", f"/v1/admin/users/{USER}").json()
    granted = override["quotas"]["text_generation"]
    assert (granted["tokens_per_request"], granted["minutes_per_day"]) == (1500, 7.5)
    assert granted.get("requests_per_day") is None  # left empty: the tier's limit applies
    browser.wait(lambda: "tokens/request: 1500" in text(browser, "user-quotas"))
    assert "audio minutes/day: 7.5" in text(browser, "user-quotas")
    api(served, "DELETE", f"/v1/admin/users/{USER}/quotas/text_generation")
    browser.sign_out()


def test_quota_request_for_any_limit(browser: Browser, served: Gateway) -> None:
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(USER_KEY)
    browser.visit("/ui/me", "me-quota-request", ready="#my-quota-requests")
    form = browser.driver.find_element("id", "quota-request")
    form.find_element("name", "tokens_per_request").send_keys("4000")
    form.find_element("name", "minutes_per_day").send_keys("30")
    form.find_element("name", "reason").send_keys("long documents")
    browser.driver.find_element("id", "quota-request-submit").click()
    notice_says(browser, "sent")
    found = re.search(r"Request (\S+) sent", text(browser, "notice"))
    assert found is not None
    request_id = found.group(1)
    browser.wait(lambda: "tokens/request: 4000" in text(browser, "my-quota-requests"))
    assert "audio minutes/day: 30" in text(browser, "my-quota-requests")
    browser.sign_out()

    browser.sign_in(ADMIN)
    browser.visit("/ui/requests", "requests-any-limit", ready=f"#approve-{request_id}")
    listed = text(browser, "quota-requests")
    assert "tokens/request: 4000, audio minutes/day: 30" in listed and "long documents" in listed
    browser.driver.find_element("id", f"approve-{request_id}").click()
    notice_says(browser, "approved")
    override = api(served, "GET", f"/v1/admin/users/{USER}").json()
    granted = override["quotas"]["text_generation"]
    assert granted["tokens_per_request"] == 4000 and granted["minutes_per_day"] == 30
    api(served, "DELETE", f"/v1/admin/users/{USER}/quotas/text_generation")
    browser.sign_out()


def test_users_page_lists_users(browser: Browser, served: Gateway) -> None:
    made = api(served, "POST", "/v1/admin/keys", json={"user": "listed-user", "tier": "pro"})
    assert made.status_code == 201, made.text
    chat(served, made.json()["key"])
    chat(served, made.json()["key"])
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(ADMIN)
    browser.visit("/ui/overview", "overview-nav", ready="#chart")
    browser.driver.find_element("link text", "Users").click()
    browser.wait(lambda: browser.driver.current_url.endswith("/ui/users"))
    browser.visit("/ui/users", "users-list", ready="#users-list")
    cells = row_cells(browser, "users-list", "listed-user")
    assert cells[1:4] == ["pro", "1", "2"]
    assert int(cells[4]) > 0 and re.fullmatch(r"\$\d+\.\d{4}", cells[5])
    assert row_cells(browser, "users-list", USER)[1:3] == ["free", "1"]
    browser.visit("/ui/users?q=listed", "users-filtered", ready="#users-list")
    assert USER not in text(browser, "users-list")
    browser.driver.find_element("link text", "listed-user").click()
    browser.wait(lambda: "listed-user" in text(browser, "user-title"))
    browser.wait(lambda: "text_generation" in text(browser, "user-usage"))
    browser.sign_out()


def test_me_own_key_form_off_per_provider(browser: Browser, served: Gateway) -> None:
    from selenium.webdriver.support.ui import Select

    api(served, "PUT", "/v1/admin/settings", json={"allow_user_keys_for": {"mock": True}})
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(USER_KEY)
    browser.visit("/ui/me", "me-own-keys", ready="#my-key-upstream option")
    form = browser.driver.find_element("id", "my-key")
    Select(browser.driver.find_element("id", "my-key-upstream")).select_by_value("mock")
    assert form.find_element("name", "key").is_enabled()
    assert browser.driver.find_element("id", "my-key-save").is_enabled()
    assert not browser.driver.find_element("id", "my-key-off").is_displayed()
    Select(browser.driver.find_element("id", "my-key-upstream")).select_by_value("other")
    assert not form.find_element("name", "key").is_enabled()
    assert not browser.driver.find_element("id", "my-key-save").is_enabled()
    sentence = text(browser, "my-key-off")
    assert "Your own keys for other are switched off on this gateway" in sentence
    browser.check("me-own-keys-off")

    api(served, "PUT", "/v1/admin/settings", json={"allow_user_keys_for": {"mock": False}})
    browser.visit("/ui/me", "me-own-keys-all-off", ready="#my-key-upstream option")
    Select(browser.driver.find_element("id", "my-key-upstream")).select_by_value("mock")
    assert not browser.driver.find_element("id", "my-key-save").is_enabled()
    assert "Storing your own provider keys is switched off" in text(browser, "my-key-off")
    # removing a stored key still works while storing is off
    browser.driver.find_element("id", "my-key-remove-submit").click()
    notice_says(browser, "Your mock key is removed.")
    browser.sign_out()


def test_reset_times_and_money_read_well(browser: Browser, served: Gateway) -> None:
    browser.driver.set_window_size(1280, 800)
    chat(served)
    browser.sign_in(USER_KEY)
    bar = '[data-capability=text_generation][data-measure="requests"]'
    browser.visit("/ui/me", "me-resets", ready=bar)
    label = browser.driver.find_element("css selector", bar).text
    human = r"resets in (\d+ d )?(\d+ h )?(\d+ min )?\((\d{4}-\d\d-\d\d )?\d\d:\d\d UTC\)$"
    assert re.search(human, label), label
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d", label), label  # no raw ISO time
    pages = ["/ui/me", "/ui/me/statement"]
    for path in pages:
        browser.visit(path, "money" + path.replace("/", "-"), ready="body[data-ready]")
        assert_money(browser, path)
    browser.sign_out()
    browser.sign_in(ADMIN)
    for name in ("overview", "analytics", "keys", "users", "statements"):
        browser.visit(f"/ui/{name}", f"money-{name}", ready="body[data-ready]")
        assert_money(browser, name)
    browser.sign_out()


def assert_money(browser: Browser, where: str) -> None:
    amounts = MONEY.findall(browser.driver.find_element("tag name", "main").text)
    assert amounts, f"{where}: no amount shown"
    odd = [a for a in amounts if not re.fullmatch(r"\$[\d,]+\.\d{4}", a)]
    assert not odd, f"{where}: {odd}"


def test_overview_tables_fit_at_1400_px(browser: Browser, served: Gateway) -> None:
    for model in ("ok", "ok-b", "code-ok"):
        chat(served, model=model)
    browser.sign_in(ADMIN)
    browser.driver.set_window_size(1400, 900)
    browser.visit("/ui/overview", "overview-1400", ready="#by-model tbody tr td")
    assert browser.driver.execute_script("return window.innerWidth") <= 1400
    assert browser.driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    wider = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('main .scroll'))"
        ".filter(e => e.scrollWidth > e.clientWidth).map(e => e.firstElementChild.id)"
    )
    assert wider == [], f"tables that scroll sideways at 1400 px: {wider}"
    browser.driver.set_window_size(1280, 800)
    browser.sign_out()


def test_viewer_and_csrf_refused_on_every_new_write(browser: Browser, served: Gateway) -> None:
    pending = api(
        served, "POST", "/v1/quota/requests", USER_KEY,
        json={"capability": "text_generation", "requested": {"tokens_per_day": 5}},
    )  # fmt: skip
    assert pending.status_code == 201, pending.text
    writes = [
        ("PUT", "/v1/admin/settings", {"allow_user_keys_for": {"mock": True}}),
        ("PUT", "/v1/admin/upstreams/mock/keys", {"keys": ["sk-viewer-should-not"]}),
        ("PUT", "/v1/admin/tiers/free/quotas/text_generation", {"tokens_per_request": 5}),
        ("PUT", f"/v1/admin/users/{USER}/quotas/text_generation", {"minutes_per_day": 1}),
        ("POST", f"/v1/admin/quota-requests/{pending.json()['id']}/approve", {}),
    ]
    shown = ("/v1/admin/settings", "/v1/admin/upstreams/mock/keys")
    before = [api(served, "GET", path).text for path in shown]
    made = api(served, "POST", "/v1/admin/tokens", json={"role": "viewer", "name": "controls"})
    assert made.status_code == 201, made.text
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(made.json()["token"])
    browser.visit("/ui/providers", "providers-viewer", ready="#allow-user-keys-mock")
    for element in ("allow-user-keys-mock", "rotate-key-mock", "rotate-mock"):
        assert not browser.driver.find_element("id", element).is_enabled(), element
    browser.visit("/ui/quotas", "quotas-viewer", ready="#save-free-text_generation")
    field = browser.driver.find_element("id", "tokens_per_request-free-text_generation")
    assert not field.is_enabled()
    for method, path, body in writes:
        assert write_from_page(browser, method, path, body) == 403, path
    browser.sign_out()

    browser.sign_in(ADMIN)  # an admin's session without the CSRF token: refused as well
    browser.visit("/ui/providers", "providers-admin", ready="#allow-user-keys-mock")
    for method, path, body in writes:
        assert write_from_page(browser, method, path, body, csrf=False) == 403, path
    browser.sign_out()
    after = [api(served, "GET", path).text for path in shown]
    assert after == before
    mine = api(served, "GET", f"/v1/admin/quota-requests?user={USER}").json()["data"]
    assert [r["status"] for r in mine if r["id"] == pending.json()["id"]] == ["pending"]

    browser.sign_in(USER_KEY)  # a user's session: the quota request needs the CSRF token too
    browser.visit("/ui/me", "me-csrf", ready="#quota-request")
    request = {"capability": "text_generation", "requested": {"tokens_per_request": 9}}
    assert write_from_page(browser, "POST", "/v1/quota/requests", request, csrf=False) == 403
    assert write_from_page(browser, "PUT", "/v1/admin/settings", {"allow_user_keys": True}) == 403
    browser.sign_out()


def test_a_deleted_token_ends_the_session_before_a_new_write(
    browser: Browser, served: Gateway
) -> None:
    """Every request re-checks the session's credential: the page, loaded while the admin
    token was good, cannot flip the switch or rotate once the token is deleted."""
    made = api(served, "POST", "/v1/admin/tokens", json={"role": "admin", "name": "short"})
    assert made.status_code == 201, made.text
    browser.driver.set_window_size(1280, 800)
    browser.sign_in(made.json()["token"])
    browser.visit("/ui/providers", "providers-before-delete", ready="#allow-user-keys-other")
    assert api(served, "DELETE", f"/v1/admin/tokens/{made.json()['id']}").status_code == 200
    before = api(served, "GET", "/v1/admin/settings").json()
    browser.driver.find_element("id", "allow-user-keys-other").click()
    notice = browser.driver.find_element("id", "notice")
    browser.wait(lambda: "bad" in str(notice.get_attribute("class")))
    assert not browser.driver.find_element("id", "allow-user-keys-other").is_selected()
    browser.driver.find_element("id", "rotate-key-other").send_keys("sk-after-the-token-is-gone")
    browser.driver.find_element("id", "rotate-other").click()
    browser.settle()
    browser.driver.get_log("browser")  # the refused writes (401) are logged: expected
    assert api(served, "GET", "/v1/admin/settings").json() == before
    assert api(served, "GET", "/v1/admin/upstreams/other/keys").json()["keys"] == []
    browser.visit("/ui/providers", "providers-after-delete", ready="#token")  # back to sign-in
