"""`gateway serve` behind TLS (issue 23, item 10): native TLS with --ssl-certfile/--ssl-keyfile
and proxies' X-Forwarded-Proto from --forwarded-allow-ips; the dashboard's cookies get
``Secure`` whenever the client's scheme is https, and only then."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.mock_upstream import MockUpstream
from tests.support import MOCK_KEY, OTHER_KEY, free_port, routes_doc, tiers_doc
from tests.ui.signin import FORM_TOKEN, sign_in

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "tls-admin-token-0123456789abcdef-xyz"
KEY = "sk-tls-test-key-0123456789"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


Serve = Callable[..., str]


@pytest.fixture
def serve(tmp_path: Path, upstream: MockUpstream) -> Iterator[Serve]:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc(upstream.base_url)))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    processes: list[subprocess.Popen[bytes]] = []

    def start(*options: str, scheme: str = "http", verify: str | bool = False) -> str:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GATEWAY_ADMIN_TOKEN": ADMIN,
               "GATEWAY_KEYS": f"{KEY}=free:tls-user", "MOCK_KEY": MOCK_KEY,
               "OTHER_KEY": OTHER_KEY}  # fmt: skip
        env.pop("REDIS_URL", None)
        argv = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path),
                "--port", str(port), *options]  # fmt: skip
        log = (tmp_path / f"serve-{port}.log").open("wb")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        url = f"{scheme}://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
            try:
                if httpx.get(url + "/healthz", verify=verify).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def cookies_of(answer: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in answer.headers.get_list("set-cookie")}


def test_native_tls_serves_https_and_the_session_cookie_is_secure(
    serve: Serve, tmp_path: Path
) -> None:
    certfile, keyfile = self_signed(tmp_path)
    url = serve("--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile),
                scheme="https", verify=str(certfile))  # fmt: skip
    with httpx.Client(base_url=url, verify=str(certfile), timeout=10) as http:
        form = http.get("/ui/login")
        assert "Secure" in cookies_of(form)["gw_login"]
        signed = sign_in(http, ADMIN)
        assert signed.status_code == 303, signed.text
        session = cookies_of(signed)["gw_session"]
        assert "Secure" in session and "HttpOnly" in session
        chat = {"model": "text", "messages": [{"role": "user", "content": "hi"}]}
        answer = http.post("/v1/chat/completions", json=chat,
                           headers={"authorization": f"Bearer {KEY}"})  # fmt: skip
        assert answer.status_code == 200, answer.text


def test_x_forwarded_proto_from_an_allowed_proxy_makes_the_cookie_secure(
    serve: Serve, tmp_path: Path
) -> None:
    proxied = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    trusted = serve("--forwarded-allow-ips", "127.0.0.1")
    with httpx.Client(base_url=trusted, headers=proxied, timeout=10) as http:
        form = http.get("/ui/login")
        presession = cookies_of(form)["gw_login"]
        assert "Secure" in presession  # so httpx (plain http here) will not send it back
        token = FORM_TOKEN.search(form.text).group(1)  # type: ignore[union-attr]
        signed = http.post(
            "/ui/login", data={"token": ADMIN, "login_token": token},
            headers={"cookie": presession.split(";")[0]},
        )  # fmt: skip
        assert signed.status_code == 303, signed.text
        assert "Secure" in cookies_of(signed)["gw_session"]
        wrong = http.get("/v1/admin/keys", headers={"authorization": "Bearer wrong-token-1234"})
        assert wrong.status_code == 401
    port = trusted.rsplit(":", 1)[1]
    failures = [line for line in (tmp_path / f"serve-{port}.log").read_text().splitlines()
                if '"auth_failed"' in line]  # fmt: skip
    assert failures and '"address":"203.0.113.7"' in failures[-1]  # the proxy's client
    assert "wrong-token-1234" not in failures[-1]
    untrusted = serve()  # proxy headers ignored: the scheme stays http
    with httpx.Client(base_url=untrusted, headers=proxied, timeout=10) as http:
        signed = sign_in(http, ADMIN)
        assert signed.status_code == 303, signed.text
        assert "Secure" not in cookies_of(signed)["gw_session"]


def test_tls_options_are_checked(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes_doc("http://127.0.0.1:9")))
    (tmp_path / "tiers.yaml").write_text(yaml.safe_dump(tiers_doc()))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    base = [sys.executable, "-m", "gateway", "serve", "--config-dir", str(tmp_path)]
    cases = {
        ("--ssl-certfile", str(tmp_path / "routes.yaml")): "go together",
        ("--ssl-certfile", "/nonexistent.pem", "--ssl-keyfile", "/nonexistent.pem"): "cannot read",
        ("--ssl-certfile", str(tmp_path / "routes.yaml"),
         "--ssl-keyfile", str(tmp_path / "tiers.yaml")): "not a usable pair",
    }  # fmt: skip
    for options, message in cases.items():
        done = subprocess.run([*base, *options], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 2 and "gateway: error: --ssl" in done.stderr, done.stderr
        assert message in done.stderr
