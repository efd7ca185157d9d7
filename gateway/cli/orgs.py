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


ORG_ACTIONS = (
    ("list", "List every organization and its time zone."),
    ("create", "Create an organization with its limits."),
    ("show", "One organization, with its teams."),
    ("update", "Change an organization's name, time zone or limits."),
    ("delete", "Delete an organization that has no teams."),
)
TEAM_ACTIONS = (
    ("list", "Every team (--org to filter)."),
    ("create", "Create a team in an organization."),
    ("update", "Change a team's name, tier, members or limits."),
    ("show", "One team, with its usage."),
    ("delete", "Delete a team that has no keys."),
    ("usage", "A team's counters in the current windows."),
    ("keys", "List the keys bound to a team."),
    ("token", "Create a team token (shown once)."),
    ("key", "Create a key for a member of the team (shown once)."),
    ("rotate", "Rotate a team key's secret."),
    ("revoke", "Revoke a team key."),
)
LIMITS_HELP = "the limits as JSON, as the admin API takes them (docs/organizations.md)"


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    orgs = commands.add_parser(
        "orgs",
        help="Create, list, change or delete organizations (admin API).",
        description="Organizations: their time zone and limits (docs/organizations.md).",
    )
    actions = orgs.add_subparsers(
        dest="orgs_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    subs = []
    for name, text in ORG_ACTIONS:
        sub = actions.add_parser(name, help=text, description=text)
        if name != "list":
            sub.add_argument("id", help="the organization's id")
        if name in ("create", "update"):
            sub.add_argument("--name", help="a display name")
            sub.add_argument("--timezone", help="an IANA zone, e.g. Europe/Paris (default UTC)")
            sub.add_argument("--limits", help=LIMITS_HELP)
        subs.append(sub)
    teams = commands.add_parser(
        "teams",
        help="Teams: create, change, tokens, keys and usage (admin API).",
        description="Teams of an organization: members, limits, team tokens and team keys.",
    )
    actions = teams.add_subparsers(
        dest="teams_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    for name, text in TEAM_ACTIONS:
        sub = actions.add_parser(name, help=text, description=text)
        if name == "list":
            sub.add_argument("--org", help="only the teams of this organization")
        else:
            sub.add_argument("id", help="the team's id")
        if name in ("create", "update"):
            sub.add_argument(
                "--org", required=name == "create", help="the organization the team is in"
            )
            sub.add_argument("--tier", required=name == "create", help="the team's tier")
            sub.add_argument("--name", help="a display name")
            sub.add_argument("--members", help="comma-separated users")
            sub.add_argument("--limits", help=LIMITS_HELP)
        if name == "token":
            sub.add_argument(
                "--role",
                required=True,
                choices=("team_admin", "team_viewer"),
                help="what the token may do for the team",
            )
        if name == "key":
            sub.add_argument("--user", required=True, help="the member the key is for")
            sub.add_argument("--budget-day", type=float, help="USD per day")
            sub.add_argument("--budget-month", type=float, help="USD per month")
        if name in ("rotate", "revoke"):
            sub.add_argument("key_id", help="the team key's id")
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
        budget = {
            k: v
            for k, v in (("day", args.budget_day), ("month", args.budget_month))
            if v is not None
        }
        return (
            "POST",
            f"{base}/keys",
            {"user": args.user, **({"budget_usd": budget} if budget else {})},
        )
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
    return (
        ("POST", "/v1/admin/orgs", {"id": args.id, **body})
        if action == "create"
        else ("PATCH", path, body)
    )


def _team_fields(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        k: v for k, v in (("org", args.org), ("tier", args.tier), ("name", args.name)) if v
    }
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
