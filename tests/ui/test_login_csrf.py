"""Login CSRF (issue 23, item 6): a sign-in form posted from another site is refused (403, no
session cookie); the sign-in page's own form, with its pre-session token, signs in."""

from __future__ import annotations

import httpx
import pytest

from gateway.config.runtime import Runtime
from gateway.secret import Secret
from tests.conftest import RunningGateway, StartGateway
from tests.ui.signin import FORM_TOKEN, sign_in

ADMIN = "login-csrf-admin-token-0123456789abcdef"
EVIL = "https://evil.example"


@pytest.fixture
def gw(start_gateway: StartGateway) -> RunningGateway:
    return start_gateway(runtime=Runtime(admin_token=Secret(ADMIN)))


def form_token(http: httpx.Client) -> str:
    found = FORM_TOKEN.search(http.get("/ui/login").text)
    assert found is not None, "the sign-in page carries a form token"
    return found.group(1)


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert "gw_session" not in answer.headers.get("set-cookie", "")
    assert "gw_session" not in answer.cookies


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site", "origin": EVIL},
        {"sec-fetch-site": "same-site"},
        {"referer": EVIL + "/attack.html"},
    ],
)
def test_a_cross_site_sign_in_is_refused(gw: RunningGateway, headers: dict[str, str]) -> None:
    """Even with a valid pre-session cookie and token: the browser says the form came from
    elsewhere."""
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        token = form_token(http)
        answer = http.post("/ui/login", data={"token": gw.key(), "login_token": token},
                           headers=headers)  # fmt: skip
        assert_refused(answer)
        assert http.get("/v1/quota").status_code == 401


def test_a_forged_form_without_the_pre_session_token_is_refused(gw: RunningGateway) -> None:
    """What a cross-site form can send when the browser omits Origin: no pre-session cookie
    (SameSite=Strict) and no form token (the attacker cannot read the page)."""
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        assert_refused(http.post("/ui/login", data={"token": gw.key()}))
        form_token(http)  # a pre-session cookie, but a guessed token
        assert_refused(http.post("/ui/login", data={"token": gw.key(), "login_token": "x" * 64}))
    with (
        httpx.Client(base_url=gw.url, timeout=10) as other,
        httpx.Client(base_url=gw.url, timeout=10) as victim,
    ):
        stolen = form_token(other)  # the attacker's own token, with the victim's cookie
        form_token(victim)
        answer = victim.post("/ui/login", data={"token": gw.key(), "login_token": stolen})
        assert_refused(answer)


def test_the_sign_in_pages_own_form_signs_in(gw: RunningGateway) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        signed = sign_in(http, ADMIN)  # same Origin, the page's token
        assert signed.status_code == 303 and "gw_session" in signed.cookies
        token = form_token(http)
        same_origin = http.post(
            "/ui/login", data={"token": gw.key(), "login_token": token},
            headers={"sec-fetch-site": "same-origin", "referer": gw.url + "/ui/login"},
        )  # fmt: skip
        assert same_origin.status_code == 303 and same_origin.headers["location"] == "/ui/me"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
