"""`gateway orgs ...` and `gateway teams ...`: thin command-line clients of the admin API.

Like `gateway keys`: one HTTP call to a running gateway (``--url`` or ``GATEWAY_URL``) with a
token (``--token`` or ``GATEWAY_ADMIN_TOKEN``: an operator's, or a team token for `teams
show|usage|keys|key|rotate|revoke`); the answer is printed as JSON. Limits are given as JSON
(``--limits '{"budget_usd": {"day": 5}, "requests": {"minute": 60}}'``), as the API takes them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.cli.admin import AdminCallFailed, Request, add_connection_options, run_call

COMMANDS = ("orgs", "teams")


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    orgs = commands.add_parser(
        "orgs", help="Create, list, change or delete organizations (admin API).",
        description="Organizations: their time zone and limits (docs/organizations.md).",
    )  # fmt: skip
    actions = orgs.add_subparsers(dest="orgs_command", required=True, metavar="ACTION",
                                  parser_class=parser_class)  # fmt: skip
    subs = [actions.add_parser("list", help="Every organization.")]
    for name, text in (("create", "Create one."), ("show", "One, with its teams."),
                       ("update", "Change its name, time zone or limits."),
                       ("delete", "Delete one without teams.")):  # fmt: skip
        sub = actions.add_parser(name, help=text)
        sub.add_argument("id")
        if name in ("create", "update"):
            sub.add_argument("--name")
            sub.add_argument("--timezone", help="an IANA zone, e.g. Europe/Paris (default UTC)")
            sub.add_argument("--limits", help="the limits as JSON")
        subs.append(sub)
    teams = commands.add_parser(
        "teams", help="Teams: create, change, tokens, keys and usage (admin API).",
        description="Teams of an organization: members, limits, team tokens and team keys.",
    )  # fmt: skip
    actions = teams.add_subparsers(dest="teams_command", required=True, metavar="ACTION",
                                   parser_class=parser_class)  # fmt: skip
    listing = actions.add_parser("list", help="Every team (--org to filter).")
    listing.add_argument("--org")
    subs.append(listing)
    for name, text in (("create", "Create one."), ("update", "Change name, tier, members, "
                       "limits."), ("show", "One, with its usage."), ("delete", "Delete one "
                       "without keys."), ("usage", "Its counters in the current windows."),
                       ("keys", "Its keys."), ("token", "A team token (shown once)."),
                       ("key", "A key for a member (shown once).")):  # fmt: skip
        sub = actions.add_parser(name, help=text)
        sub.add_argument("id", help="the team")
        if name in ("create", "update"):
            sub.add_argument("--org", required=name == "create")
            sub.add_argument("--tier", required=name == "create")
            sub.add_argument("--name")
            sub.add_argument("--members", help="comma-separated users")
            sub.add_argument("--limits", help="the limits as JSON")
        if name == "token":
            sub.add_argument("--role", required=True, choices=("team_admin", "team_viewer"))
        if name == "key":
            sub.add_argument("--user", required=True)
            sub.add_argument("--budget-day", type=float, help="USD per day")
            sub.add_argument("--budget-month", type=float, help="USD per month")
        subs.append(sub)
    for name, text in (("rotate", "Rotate a team key."), ("revoke", "Revoke a team key.")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("id", help="the team")
        sub.add_argument("key_id")
        subs.append(sub)
    add_connection_options(*subs)


def run(args: argparse.Namespace) -> int:
    return run_call(args, _request)


def _request(args: argparse.Namespace) -> Request:
    if args.command == "orgs":
        return _org_request(args)
    action, team = args.teams_command, getattr(args, "id", None)
    base = f"/v1/admin/teams/{team}"
    if action == "list":
        return "GET", "/v1/admin/teams" + (f"?org={args.org}" if args.org else ""), None
    if action == "create":
        return "POST", "/v1/admin/teams", {"id": team, **_team_fields(args)}
    if action == "update":
        return "PATCH", base, _team_fields(args)
    if action in ("show", "delete"):
        return ("GET" if action == "show" else "DELETE"), base, None
    if action in ("usage", "keys"):
        return "GET", f"{base}/{action}", None
    if action == "token":
        return "POST", f"{base}/tokens", {"role": args.role}
    if action == "key":
        budget = {k: v for k, v in (("day", args.budget_day), ("month", args.budget_month))
                  if v is not None}  # fmt: skip
        return "POST", f"{base}/keys", {"user": args.user, **({"budget_usd": budget}
                                                               if budget else {})}  # fmt: skip
    if action == "rotate":
        return "POST", f"{base}/keys/{args.key_id}/rotate", {}
    return "DELETE", f"{base}/keys/{args.key_id}", None


def _org_request(args: argparse.Namespace) -> Request:
    action = args.orgs_command
    if action == "list":
        return "GET", "/v1/admin/orgs", None
    path = f"/v1/admin/orgs/{args.id}"
    if action in ("show", "delete"):
        return ("GET" if action == "show" else "DELETE"), path, None
    body = {k: v for k, v in (("name", args.name), ("timezone", args.timezone)) if v}
    if args.limits is not None:
        body["limits"] = _json(args.limits)
    return ("POST", "/v1/admin/orgs", {"id": args.id, **body}) if action == "create" else (
        "PATCH", path, body)  # fmt: skip


def _team_fields(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in (("org", args.org), ("tier", args.tier),
                                              ("name", args.name)) if v}  # fmt: skip
    if args.command == "teams" and args.teams_command == "update":
        body.pop("org", None)  # a team stays in its organization
    if args.members is not None:
        body["members"] = [m.strip() for m in args.members.split(",") if m.strip()]
    if args.limits is not None:
        body["limits"] = _json(args.limits)
    return body


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise AdminCallFailed(
            '--limits must be JSON, e.g. \'{"budget_usd": {"day": 5}}\'.'
        ) from None
