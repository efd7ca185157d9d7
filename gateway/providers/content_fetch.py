"""Fetching a URL an upstream chose (a finished video's file), only where the policy allows.

A job API's answer may name any URL; fetched blindly, it would reach the gateway's own network
(SSRF) and stream what it finds to the caller. So, by default: https only; the host in the
policy's ``hosts`` when that list is set; every address the name resolves to public (no
private, loopback, link-local, shared, multicast, reserved or unspecified one); and the
connection is made to the vetted address, with the URL's host kept for the ``Host`` header and
the TLS name, so a second resolution (DNS rebinding) cannot switch it. ``allow_insecure``
lifts the scheme and address checks (a local mock upstream over http, for testing); the host
list still holds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from gateway.config.model import ContentUrlPolicy
from gateway.errors import UpstreamError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(UpstreamError):
    """The upstream named a URL the policy does not let the gateway fetch (a 502: the
    upstream's answer is at fault, not the caller)."""

    def __init__(self, why: str) -> None:
        message = f"The video upstream named a content URL the gateway may not fetch: {why}."
        super().__init__(message, code="unsafe_content_url")


def host_allowed(host: str, hosts: frozenset[str]) -> bool:
    """``host`` is listed, or under a listed ``*.domain``; any host when the list is empty."""
    if not hosts:
        return True
    host = host.lower().rstrip(".")
    if host in hosts:
        return True
    return any(p.startswith("*.") and host.endswith(p[1:]) for p in hosts)


def check_url(url: str, policy: ContentUrlPolicy) -> httpx.URL:
    """The URL parsed, when its scheme and host pass (what a redirect may point the caller to;
    the addresses are checked at fetch time)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise UnsafeUrl("not a valid URL") from None
    schemes = ("https", "http") if policy.allow_insecure else ("https",)
    if parsed.scheme not in schemes:
        raise UnsafeUrl(f"scheme '{parsed.scheme}' (only {' or '.join(schemes)})")
    if not parsed.host:
        raise UnsafeUrl("no host")
    if not host_allowed(parsed.host, policy.hosts):
        raise UnsafeUrl(f"host '{parsed.host}' is not in settings.video_content_hosts")
    return parsed


def public(address: Address) -> bool:
    """A globally routable unicast address (an IPv4 one mapped into IPv6 judged as itself)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def vetted_address(url: httpx.URL, policy: ContentUrlPolicy) -> Address:
    """The address to connect to: every address the host resolves to must be public."""
    host = url.host
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            raise UnsafeUrl(f"host '{host}' does not resolve") from None
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not found:
        raise UnsafeUrl(f"host '{host}' does not resolve")
    if not policy.allow_insecure:
        refused = [a for a in found if not public(a)]
        if refused:
            raise UnsafeUrl(f"host '{host}' resolves to a non-public address ({refused[0]})")
    return found[0]


def pinned_request(url: httpx.URL, address: Address, timeouts: dict[str, float]) -> httpx.Request:
    """A GET of ``url`` sent to ``address``: ``Host`` and the TLS server name stay the URL's."""
    netloc = url.netloc.decode("ascii")
    return httpx.Request(
        "GET",
        url.copy_with(host=str(address)),
        headers={"host": netloc, "accept-encoding": "identity"},
        extensions={"timeout": timeouts, "sni_hostname": url.host},
    )


class ContentFetcher:
    """Opens upstream-chosen URLs under ``policy``, on a transport of its own (httpx's, which
    takes the TLS name apart from the address it connects to)."""

    def __init__(self, policy: ContentUrlPolicy) -> None:
        self.policy = policy
        self._transport: httpx.AsyncHTTPTransport | None = None

    async def open(self, url: str, timeouts: dict[str, float]) -> httpx.Response:
        """The open answer (status < 300); ``UnsafeUrl`` or ``UpstreamError`` otherwise."""
        parsed = check_url(url, self.policy)
        address = await vetted_address(parsed, self.policy)
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport()
        try:
            response = await self._transport.handle_async_request(
                pinned_request(parsed, address, timeouts)
            )
        except httpx.HTTPError:
            raise UpstreamError("The video's file could not be fetched.") from None
        if response.status_code >= 300:  # a redirect is not followed: it could go anywhere
            await response.aclose()
            raise UpstreamError(f"The video's file answered HTTP {response.status_code}.")
        return response

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None
