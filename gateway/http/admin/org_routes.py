"""The admin route table's organization and team operations: orgs, teams, their keys and usage.

Operators manage organizations and teams; a team's own tokens (``team_admin``,
``team_viewer``) reach its keys and usage. ``routes.OPERATIONS`` lists these in its table.
"""

from __future__ import annotations

from gateway.http.admin import orgs, team_keys, team_usage
from gateway.http.admin.operation import Op
from gateway.http.admin.org_schemas import (
    ORG_CREATE,
    ORG_UPDATE,
    TEAM_CREATE,
    TEAM_KEY,
    TEAM_TOKEN,
    TEAM_UPDATE,
)
from gateway.http.admin.schemas import ROTATE, TEAM_QUERY

ORG_OPERATIONS: tuple[Op, ...] = (
    Op(
        "POST",
        "/v1/admin/orgs",
        orgs.create_org,
        "admin",
        "Create an organization (id, timezone, limits)",
        body=ORG_CREATE,
        status=201,
    ),
    Op("GET", "/v1/admin/orgs", orgs.list_orgs, "viewer", "List organizations"),
    Op("GET", "/v1/admin/orgs/{org}", orgs.show_org, "viewer", "One organization and its teams"),
    Op(
        "PATCH",
        "/v1/admin/orgs/{org}",
        orgs.update_org,
        "admin",
        "Change an organization's name, time zone or limits",
        body=ORG_UPDATE,
    ),
    Op(
        "DELETE",
        "/v1/admin/orgs/{org}",
        orgs.delete_org,
        "admin",
        "Delete an organization without teams",
    ),
    Op(
        "POST",
        "/v1/admin/teams",
        orgs.create_team,
        "admin",
        "Create a team in an organization (tier, members, limits)",
        body=TEAM_CREATE,
        status=201,
    ),
    Op("GET", "/v1/admin/teams", orgs.list_teams, "viewer", "List teams (?org=)", query=("org",)),
    Op(
        "PATCH",
        "/v1/admin/teams/{team}",
        orgs.update_team,
        "admin",
        "Change a team's name, tier, members or limits (operators only)",
        body=TEAM_UPDATE,
    ),
    Op("DELETE", "/v1/admin/teams/{team}", orgs.delete_team, "admin", "Delete a team without keys"),
    Op(
        "POST",
        "/v1/admin/teams/{team}/tokens",
        orgs.create_team_token,
        "admin",
        "Create a token scoped to a team (team_admin, team_viewer); shown once",
        body=TEAM_TOKEN,
        status=201,
    ),
    Op(
        "GET",
        "/v1/admin/teams/{team}",
        team_keys.show,
        "team_viewer",
        "One team, with its usage in the current windows",
    ),
    Op(
        "GET",
        "/v1/admin/teams/{team}/usage",
        team_keys.usage,
        "team_viewer",
        "A team's counters in the current windows",
    ),
    Op(
        "GET",
        "/v1/admin/teams/{team}/analytics",
        team_usage.analytics,
        "team_viewer",
        "The team's usage totals, grouped and bucketed",
        query=(*TEAM_QUERY, "group_by", "bucket"),
    ),
    Op(
        "GET",
        "/v1/admin/teams/{team}/records",
        team_usage.records,
        "team_viewer",
        "The team's usage records, paged by cursor",
        query=(*TEAM_QUERY, "limit", "cursor"),
    ),
    Op(
        "GET",
        "/v1/admin/teams/{team}/export",
        team_usage.export,
        "team_viewer",
        "The team's usage records as CSV, JSON or XLSX",
        query=(*TEAM_QUERY, "format"),
    ),
    Op(
        "GET",
        "/v1/admin/teams/{team}/keys",
        team_keys.list_keys,
        "team_viewer",
        "A team's keys, with spend and last use",
    ),
    Op(
        "POST",
        "/v1/admin/teams/{team}/keys",
        team_keys.create_key,
        "team_admin",
        "Create a key for a member, within the team's limits; shown once",
        body=TEAM_KEY,
        status=201,
    ),
    Op(
        "POST",
        "/v1/admin/teams/{team}/keys/{id}/rotate",
        team_keys.rotate_key,
        "team_admin",
        "Rotate a team key's secret",
        body=ROTATE,
    ),
    Op(
        "DELETE",
        "/v1/admin/teams/{team}/keys/{id}",
        team_keys.revoke_key,
        "team_admin",
        "Revoke a team key",
    ),
)
