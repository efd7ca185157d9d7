"""`gateway keys ...`: thin command-line clients of the admin API (URL and token from options/env).

Each command is one HTTP call to a running gateway (``--url`` or ``GATEWAY_URL``, default
``http://127.0.0.1:8080``) with an admin token (``--token`` or ``GATEWAY_ADMIN_TOKEN``); the
answer is printed as JSON. An error answer prints its message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

URL_ENV, TOKEN_ENV = "GATEWAY_URL", "GATEWAY_ADMIN_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
COMMANDS = ("keys",)


class AdminCallFailed(Exception):
    """The gateway refused the call or could not be reached: one line, exit 1."""


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``keys`` (create, list, rotate, revoke) to the top-level subcommands."""
    keys = commands.add_parser(
        "keys",
        help="Manage client keys through the admin API.",
        description="Create, list, rotate and revoke client keys (sk-gw-...) of a running "
        "gateway through its admin API.",
    )
    actions = keys.add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    create = actions.add_parser(
        "create",
        help="Create a key; prints its secret once.",
        description="Create a client key for a user in a tier; the answer holds its secret, "
        "shown this once.",
    )
    create.add_argument(
        "--user", required=True, help="the user the key belongs to (its usage and quotas)"
    )
    create.add_argument("--tier", required=True, help="a tier of tiers.yaml")
    create.add_argument("--name", help="a label shown in listings")
    create.add_argument("--models", help="comma-separated allow-list of models or routes")
    create.add_argument("--expires-at", help="epoch seconds or ISO 8601")
    create.add_argument("--budget-day", type=float, help="USD per UTC day")
    create.add_argument("--budget-month", type=float, help="USD per UTC month")
    create.add_argument("--rpm", type=int, help="the key's requests per minute")
    create.add_argument("--tpm", type=int, help="the key's tokens per minute")
    create.add_argument("--max-parallel", type=int, help="the key's requests in flight at once")
    create.add_argument("--metadata", help="a JSON object")
    listing = actions.add_parser(
        "list",
        help="List keys (never their secrets).",
        description="List client keys with their limits and state; secrets are never shown.",
    )
    listing.add_argument("--user", help="only this user's keys (default: every user's)")
    rotate = actions.add_parser(
        "rotate",
        help="New secret; the old one works for --grace-s.",
        description="Give a key a new secret (printed once); the old secret keeps working "
        "for --grace-s seconds.",
    )
    rotate.add_argument("id", help="the key's id (from `gateway keys list`)")
    rotate.add_argument(
        "--grace-s", type=int, default=0, help="seconds the old secret still works (default: 0)"
    )
    revoke = actions.add_parser(
        "revoke",
        help="Revoke a key at once, everywhere.",
        description="Revoke a key at once, on every replica.",
    )
    revoke.add_argument("id", help="the key's id (from `gateway keys list`)")
    add_connection_options(create, listing, rotate, revoke)


def add_connection_options(*parsers: argparse.ArgumentParser) -> None:
    """``--url`` and ``--token``, defaulting to ``GATEWAY_URL`` and ``GATEWAY_ADMIN_TOKEN``."""
    for sub in parsers:
        sub.add_argument(
            "--url",
            default=os.environ.get(URL_ENV, DEFAULT_URL),
            help=f"the running gateway's base URL (default: ${URL_ENV}, else {DEFAULT_URL})",
        )
        sub.add_argument(  # the default is never shown: it is a secret
            "--token",
            default=os.environ.get(TOKEN_ENV),
            help=f"an admin token (default: ${TOKEN_ENV})",
        )


Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


def run_call(args: argparse.Namespace, request: Callable[[argparse.Namespace], Request]) -> int:
    """Make the one call ``request`` names and print its answer; errors print one line, 1."""
    try:
        method, path, body = request(args)
        print(json.dumps(_call(args.url, args.token, method, path, body), indent=2))
    except AdminCallFailed as error:
        print(f"gateway: error: {error}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``gateway keys ...``."""
    return run_call(args, _request)


def _request(args: argparse.Namespace) -> Request:
    action = args.keys_command
    if action == "list":
        return "GET", "/v1/admin/keys" + (f"?user={args.user}" if args.user else ""), None
    if action == "rotate":
        return "POST", f"/v1/admin/keys/{args.id}/rotate", {"grace_s": args.grace_s}
    if action == "revoke":
        return "DELETE", f"/v1/admin/keys/{args.id}", None
    body: dict[str, Any] = {"user": args.user, "tier": args.tier}
    optional = {
        "name": args.name,
        "models": args.models.split(",") if args.models else None,
        "expires_at": _number_or_text(args.expires_at),
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_parallel": args.max_parallel,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    budget = {"day": args.budget_day, "month": args.budget_month}
    if any(v is not None for v in budget.values()):
        body["budget_usd"] = {k: v for k, v in budget.items() if v is not None}
    if args.metadata:
        try:
            body["metadata"] = json.loads(args.metadata)
        except ValueError:
            raise AdminCallFailed("--metadata must be a JSON object") from None
    return "POST", "/v1/admin/keys", body


def _number_or_text(value: str | None) -> float | str | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _call(url: str, token: str | None, method: str, path: str, body: Any) -> Any:
    if not token:
        raise AdminCallFailed(f"no admin token: pass --token or set {TOKEN_ENV}")
    headers = {"authorization": f"Bearer {token}"}
    try:
        answer = httpx.request(
            method, url.rstrip("/") + path, headers=headers, json=body, timeout=30
        )
    except httpx.HTTPError as error:
        raise AdminCallFailed(f"{url}: {type(error).__name__}: {error}") from None
    try:
        document = answer.json()
    except ValueError:
        document = None
    if answer.status_code >= 400:
        found = document.get("error") if isinstance(document, dict) else None
        detail: dict[str, Any] = found if isinstance(found, dict) else {}
        problems = detail.get("problems")
        if isinstance(problems, list) and problems:  # an invalid config: one problem a line
            raise AdminCallFailed("\n".join(["the config was refused:", *map(str, problems)]))
        message = detail.get("message") or answer.text[:200]
        raise AdminCallFailed(f"{method} {path}: {answer.status_code}: {message}")
    return document
