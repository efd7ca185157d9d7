"""`gateway flags list|set` and `gateway reload`: thin command-line clients of the admin API.

Like `gateway keys`: one HTTP call to a running gateway (``--url`` or ``GATEWAY_URL``) with an
admin token (``--token`` or ``GATEWAY_ADMIN_TOKEN``); the answer is printed as JSON, an error
answer prints its message (an invalid config: every problem, one per line) and exits 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli.admin import Request, add_connection_options, run_call

COMMANDS = ("flags", "reload")


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    flags = commands.add_parser(
        "flags",
        help="List or set feature flags (admin API).",
        description="List the feature flags of a running gateway, or set one at run time, "
        "through its admin API.",
    )
    actions = flags.add_subparsers(
        dest="flags_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    listing = actions.add_parser(
        "list",
        help="Every flag: state, default, source.",
        description="Every flag with its state, its tiers.yaml default and where the state "
        "comes from.",
    )
    setting = actions.add_parser(
        "set",
        help="Set a flag at run time on every replica.",
        description="Turn a flag on or off at run time on every replica, or back to its "
        "tiers.yaml default.",
    )
    setting.add_argument("name", help="the flag's name (see `gateway flags list`)")
    setting.add_argument("state", choices=("on", "off", "default"), help="default: tiers.yaml's")
    setting.add_argument("--rollout", type=float, help="percent of users (sticky per user)")
    reload = commands.add_parser(
        "reload",
        help="Reload routes.yaml and tiers.yaml on every worker and replica (admin API).",
        description="Validate the files again and switch to them; an invalid config is refused "
        "with the problems `gateway check` prints, and the config in force stays.",
    )
    add_connection_options(listing, setting, reload)


def run(args: argparse.Namespace) -> int:
    return run_call(args, _request)


def _request(args: argparse.Namespace) -> Request:
    if args.command == "reload":
        return "POST", "/v1/admin/reload", None
    if args.flags_command == "list":
        return "GET", "/v1/admin/flags", None
    path = f"/v1/admin/flags/{args.name}"
    if args.state == "default":
        return "DELETE", path, None
    body: dict[str, Any] = {"enabled": args.state == "on"}
    if args.rollout is not None:
        body["rollout_percent"] = args.rollout
    return "PUT", path, body
