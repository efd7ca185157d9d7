"""``gateway secrets status|rotate``: the master key's rotation, a thin client of the admin API.

``status`` lists how many stored upstream keys each master key (``kid``) sealed; ``rotate``
(``--dry-run`` to only count) has the gateway seal every stored key again with its current
master key. One HTTP call (``--url``/``GATEWAY_URL``, ``--token``/``GATEWAY_ADMIN_TOKEN``),
its JSON answer printed; no key is ever part of either answer.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.admin import Request, add_connection_options, run_call

COMMANDS = ("secrets",)


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    secrets = commands.add_parser(
        "secrets",
        help="Master-key rotation of the stored upstream keys (admin API).",
        description="Count the stored upstream keys per master key, or seal them again with "
        "the current GATEWAY_SECRET_KEY, through a running gateway's admin API.",
    )
    actions = secrets.add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    status = actions.add_parser(
        "status",
        help="Stored upstream keys per master key (kid).",
        description="How many stored upstream keys each master key (kid) sealed.",
    )
    rotate = actions.add_parser(
        "rotate",
        help="Seal every stored upstream key again with the current master key.",
        description="Run once every gateway process has the new GATEWAY_SECRET_KEY and the "
        "previous one in GATEWAY_SECRET_KEY_OLD; then GATEWAY_SECRET_KEY_OLD can be removed.",
    )
    rotate.add_argument("--dry-run", action="store_true", help="count, change nothing")
    add_connection_options(status, rotate)


def run(args: argparse.Namespace) -> int:
    return run_call(args, _request)


def _request(args: argparse.Namespace) -> Request:
    if args.secrets_command == "status":
        return "GET", "/v1/admin/secrets", None
    return "POST", "/v1/admin/secrets/rotate", {"dry_run": bool(args.dry_run)}
