"""``serve``'s TLS and proxy options, checked and turned into uvicorn's settings.

Native TLS (``--ssl-certfile``/``--ssl-keyfile``) and the proxies whose
``X-Forwarded-Proto``/``X-Forwarded-For`` are trusted (``--forwarded-allow-ips``).

Either way the request's scheme is https when the client's connection is, so the dashboard's
cookies get ``Secure``, and the client address (used by the sign-in throttle) is the proxy's
client's rather than the proxy's."""

from __future__ import annotations

import argparse
import os
import ssl
from typing import Any

from gateway.cli.base import UsageError


def add_tls_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--ssl-certfile", default=None, help="serve https with this certificate (PEM) chain"
    )
    serve.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="comma-separated addresses (or *) of proxies whose X-Forwarded-Proto and "
        "X-Forwarded-For are trusted; unset: proxy headers are ignored",
    )


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn's settings for the options given (checked: files readable, a key with a cert)."""
    certfile = getattr(args, "ssl_certfile", None)
    keyfile = getattr(args, "ssl_keyfile", None)
    allowed = getattr(args, "forwarded_allow_ips", None)
    if bool(certfile) != bool(keyfile):
        raise UsageError("--ssl-certfile and --ssl-keyfile go together")
    if certfile and keyfile:
        for name, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
            if not os.access(path, os.R_OK):
                raise UsageError(f"{name}: cannot read {path}")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError) as error:
            raise UsageError(f"--ssl-certfile/--ssl-keyfile: not a usable pair ({error})") from None
    if allowed is not None and not allowed.strip():
        raise UsageError("--forwarded-allow-ips: expected addresses or *")
    return {
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "proxy_headers": allowed is not None,  # off by default: saves a middleware layer
        "forwarded_allow_ips": allowed,
    }
