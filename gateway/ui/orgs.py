"""The dashboard's organizations page: every organization, its teams, members, limits and usage.

Rendered on the server from the control plane's snapshot and each team's counters in their
current windows (``http/admin/team_keys.team_usage``); changes are made through the admin API
or ``gateway orgs`` / ``gateway teams`` (docs/organizations.md).
"""

from __future__ import annotations

from typing import Any

from gateway.control import keys as runtime_keys
from gateway.control.orgs import ORGS, TEAMS
from gateway.errors import StoreUnavailable
from gateway.http.admin.team_keys import team_usage
from gateway.http.services import Services

WINDOWS = ("minute", "hour", "day", "month")


async def orgs_context(gateway: Services) -> dict[str, Any]:
    """``orgs``: per organization its document and its teams, each team with its usage and
    its number of keys (a team's usage is left out while the store is down)."""
    snapshot = gateway.control.snapshot
    keys_per_team: dict[str, int] = {}
    for document in snapshot.kind(runtime_keys.KIND).values():
        team = document.get("team")
        if isinstance(team, str):
            keys_per_team[team] = keys_per_team.get(team, 0) + 1
    orgs = []
    for org_id, org in sorted(snapshot.kind(ORGS).items()):
        teams = []
        for team_id, team in sorted(snapshot.kind(TEAMS).items()):
            if team.get("org") != org_id:
                continue
            try:
                usage: dict[str, Any] | None = await team_usage(gateway, team_id)
            except StoreUnavailable:
                usage = None
            teams.append(
                {"id": team_id, **team, "usage": usage, "keys": keys_per_team.get(team_id, 0)}
            )
        orgs.append({"id": org_id, **org, "teams": teams})
    return {"orgs": orgs, "windows": WINDOWS}
