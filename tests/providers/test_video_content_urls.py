"""SSRF through a video job's file URL: the URL is the upstream's choice, so the gateway fetches
(or redirects to) it only under settings' URL policy: https, public addresses after resolution,
the listed hosts; the connection goes to the address that was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import httpx
import pytest

from gateway.config.model import ContentUrlPolicy
from gateway.providers.content_fetch import (
    ContentFetcher,
    UnsafeUrl,
    check_url,
    pinned_request,
    vetted_address,
)
from tests.providers.mock_video import VIDEO_BYTES
from tests.providers.test_videos import sdk, video_models, wait_done

STRICT = ContentUrlPolicy()
LOCAL = ContentUrlPolicy(allow_insecure=True)
TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


def _gateway(start_providers: Any, video_server: Any, **settings: Any) -> Any:
    upstreams, models = video_models(video_server[1].url)
    return start_providers(
        {"video": ["kling"], "tts": ["veo"]},
        extra_upstreams=upstreams,
        extra_models=models,
        video_poll_interval_s=0.05,
        settings=settings or None,
    )


def _content(gw: Any, job_id: str) -> httpx.Response:
    return httpx.get(
        f"{gw.base_url}/videos/{job_id}/content",
        headers={"authorization": f"Bearer {gw.keys['free']}"},
    )


def _completed(gw: Any, model: str) -> str:
    with sdk(gw) as client:
        job = client.videos.create(model=model, prompt="harbour", seconds="4")
        assert wait_done(client, job.id).status == "completed"
        return str(job.id)


def test_a_file_url_on_a_loopback_http_address_is_refused_by_default(
    start_providers: Any, video_server: Any
) -> None:
    gw = _gateway(start_providers, video_server)  # no setting: the shipped default
    fetched = _content(gw, _completed(gw, "kling"))  # the mock names http://127.0.0.1:.../files
    assert fetched.status_code == 502, fetched.text  # before: 200 with the internal page
    error = fetched.json()["error"]
    assert error["code"] == "unsafe_content_url" and error["type"] == "api_error"
    assert set(error) == {"message", "type", "param", "code"}
    redirected = _content(gw, _completed(gw, "veo"))  # nor is the caller sent there
    assert redirected.status_code == 502 and "location" not in redirected.headers


def test_the_host_list_holds_even_for_local_testing(
    start_providers: Any, video_server: Any
) -> None:
    gw = _gateway(
        start_providers,
        video_server,
        video_content_allow_insecure=True,
        video_content_hosts=["*.example-cdn.com"],
    )
    refused = _content(gw, _completed(gw, "kling"))
    assert refused.status_code == 502 and "not in settings" in refused.json()["error"]["message"]
    listed = _gateway(
        start_providers,
        video_server,
        video_content_allow_insecure=True,
        video_content_hosts=["127.0.0.1"],
    )
    assert _content(listed, _completed(listed, "kling")).content == VIDEO_BYTES


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/v.mp4",  # not https
        "ftp://cdn.example.com/v.mp4",
        "file:///etc/passwd",
        "https:///v.mp4",
    ],
)
def test_only_https_urls_with_a_host_pass(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, STRICT)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "224.0.0.1",
        "[::1]",
        "[fe80::1]",
        "[fd00::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "localhost",  # a name resolving to loopback
    ],
)
def test_non_public_addresses_are_refused_after_resolution(host: str) -> None:
    url = check_url(f"https://{host}/v.mp4", STRICT)
    with pytest.raises(UnsafeUrl):
        asyncio.run(vetted_address(url, STRICT))


def test_a_name_with_any_non_public_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every resolved address is checked, not just the first."""

    async def resolve(self: Any, host: str, port: int, **kw: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", resolve)
    url = check_url("https://cdn.example.com/v.mp4", STRICT)
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.7"):
        asyncio.run(vetted_address(url, STRICT))


def test_the_request_goes_to_the_vetted_address_under_the_urls_name() -> None:
    url = httpx.URL("https://cdn.example.com:8443/v.mp4?sig=1")
    request = pinned_request(url, ipaddress.ip_address("93.184.216.34"), TIMEOUTS)
    assert request.url.host == "93.184.216.34" and request.url.port == 8443
    assert request.url.query == b"sig=1"
    assert request.headers["host"] == "cdn.example.com:8443"
    assert request.extensions["sni_hostname"] == "cdn.example.com"


def test_the_connection_uses_the_checked_address_not_a_second_lookup(
    video_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name the system cannot resolve, answered once by the (patched) resolver with the
    mock's address: the fetch only succeeds if it connects to that address as checked."""
    port = video_server[1].port
    lookups: list[str] = []
    real = asyncio.BaseEventLoop.getaddrinfo

    async def resolve(self: Any, host: str, *args: Any, **kw: Any) -> Any:
        if host == "files.rebind.invalid":
            lookups.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await real(self, host, *args, **kw)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", resolve)

    async def fetch() -> bytes:
        fetcher = ContentFetcher(LOCAL)
        try:
            url = f"http://files.rebind.invalid:{port}/files/upstream-1.mp4"
            response = await fetcher.open(url, TIMEOUTS)
            try:
                return await response.aread()
            finally:
                await response.aclose()
        finally:
            await fetcher.aclose()

    assert asyncio.run(fetch()) == VIDEO_BYTES
    assert lookups == ["files.rebind.invalid"]  # resolved once, by the check
