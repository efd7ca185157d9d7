"""Organizations and teams (kinds ``orgs`` and ``teams``): their documents, checks and limits.

An organization: ``{name, timezone, limits, created_at, created_by}``. A team belongs to one
organization: ``{org, name, tier, members: [user], limits, created_at, created_by}``; its
``tier`` is the one its team admins' keys get. ``limits`` (both levels)::

    {budget_usd: {minute, hour, day, month}, requests: {...}, tokens: {...},
     max_parallel, models: [model or route] | null}

every field optional (absent or null: no limit). The windows follow the organization's IANA
``timezone``. Model allow-lists narrow downward: a team's list must lie within its
organization's, and a key's within its team's (checked on every write, and intersected again
on every request, so a later narrowing above still holds). Ids are chosen by the operator and
checked (``ID``): they become parts of store keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.control.plane import Snapshot
from gateway.errors import InvalidRequest
from gateway.metering.types import LevelLimits, Windowed
from gateway.metering.zoned_windows import WINDOWS, valid_zone
from gateway.store.port import UNLIMITED

ORGS, TEAMS = "orgs", "teams"
# ids of deleted teams, never given to a new team: usage records and team tokens carry them
RETIRED_TEAMS = "retired_teams"
ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MEASURES = ("budget_usd", "requests", "tokens")
LIMIT_FIELDS = (*MEASURES, "max_parallel", "models")
MAX_USD = 10**7
MAX_COUNT = 10**12
MICROS_PER_USD = 1_000_000


def check_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not ID.match(value):
        raise InvalidRequest(
            f"'{name}' must be 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter "
            "or digit.",
            param=name,
        )
    return value


def check_zone(value: object) -> str:
    if value is None:
        return "UTC"
    if not isinstance(value, str) or not valid_zone(value):
        raise InvalidRequest(
            "'timezone' must be an IANA time zone name, e.g. 'Europe/Paris'.", param="timezone"
        )
    return value


def check_limits(value: object, known_models: Iterable[str]) -> dict[str, Any]:
    """A ``limits`` object checked and normalised (limits left out are dropped)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not set(value) <= set(LIMIT_FIELDS):
        raise InvalidRequest(
            f"'limits' must be an object with keys from: {', '.join(LIMIT_FIELDS)}.",
            param="limits",
        )
    limits: dict[str, Any] = {}
    for measure in MEASURES:
        windows = value.get(measure)
        if windows is None:
            continue
        if not isinstance(windows, dict) or not set(windows) <= set(WINDOWS):
            raise InvalidRequest(
                f"'limits.{measure}' must be an object with keys from: {', '.join(WINDOWS)}.",
                param=f"limits.{measure}",
            )
        kept = {w: _amount(measure, w, windows[w]) for w in WINDOWS if windows.get(w) is not None}
        if kept:
            limits[measure] = kept
    parallel = value.get("max_parallel")
    if parallel is not None:
        whole = isinstance(parallel, int) and not isinstance(parallel, bool)
        if not whole or not 1 <= parallel <= 10**6:
            raise InvalidRequest(
                "'limits.max_parallel' must be a whole number from 1 to 1e6, or null.",
                param="limits.max_parallel",
            )
        limits["max_parallel"] = parallel
    models = value.get("models")
    if models is not None:
        known = set(known_models)
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise InvalidRequest("'limits.models' must be a list of names, or null.",
                                 param="limits.models")  # fmt: skip
        for model in models:
            if model not in known:
                raise InvalidRequest(f"Unknown model or route '{model}'.", param="limits.models")
        limits["models"] = sorted(set(models))
    return limits


def _amount(measure: str, window: str, value: object) -> int | float:
    money = measure == "budget_usd"
    most = MAX_USD if money else MAX_COUNT
    allowed = int | float if money else int
    if isinstance(value, bool) or not isinstance(value, allowed) or not 0 <= value <= most:
        what = "a number of USD" if money else "a whole number"
        raise InvalidRequest(
            f"'limits.{measure}.{window}' must be {what} from 0 to {most:.0e}, or null.",
            param=f"limits.{measure}.{window}",
        )
    return value


def check_narrower(
    models: Iterable[str] | None, wider: frozenset[str] | None, what: str, param: str = "models"
) -> None:
    """400 unless ``models`` lies within ``wider`` (None: any model; a list left out inherits
    the one above, so it is never wider)."""
    if wider is None or models is None:
        return
    outside = sorted(set(models) - wider)
    if outside:
        raise InvalidRequest(
            f"'{outside[0]}' is not allowed by {what} (allowed: {', '.join(sorted(wider))}).",
            param=param,
        )


def level_limits(level: str, level_id: str, limits: Mapping[str, Any], zone: str) -> LevelLimits:
    """The metering form of a stored ``limits`` object."""

    def windowed(measure: str) -> Windowed:
        scale = MICROS_PER_USD if measure == "budget_usd" else 1
        windows = limits.get(measure) or {}
        return Windowed(*(_units(windows.get(w), scale) for w in WINDOWS))

    parallel = limits.get("max_parallel")
    return LevelLimits(
        level, level_id, zone, windowed("budget_usd"), windowed("requests"), windowed("tokens"),
        parallel if isinstance(parallel, int) else UNLIMITED,
    )  # fmt: skip


def _units(value: object, scale: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return UNLIMITED
    return round(value * scale)


def models_of(limits: Mapping[str, Any]) -> frozenset[str] | None:
    models = limits.get("models")
    return frozenset(models) if isinstance(models, list) else None


def narrowed(*lists: frozenset[str] | None) -> frozenset[str] | None:
    """The models every list allows (None: a list that allows any)."""
    found: frozenset[str] | None = None
    for models in lists:
        if models is not None:
            found = models if found is None else found & models
    return found


@dataclass(frozen=True)
class TeamView:
    """What a request of a key in a team needs: its levels, members and allowed models."""

    team: str
    org: str
    tier: str | None
    members: frozenset[str]
    levels: tuple[LevelLimits, ...]  # org first, then team
    models: frozenset[str] | None  # the team's list narrowed by its organization's


def team_view(team_id: str, team: Mapping[str, Any], org: Mapping[str, Any]) -> TeamView:
    zone = str(org.get("timezone") or "UTC")
    org_limits, team_limits = org.get("limits") or {}, team.get("limits") or {}
    org_id = str(team["org"])
    members = team.get("members") or ()
    return TeamView(
        team_id, org_id, team.get("tier") if isinstance(team.get("tier"), str) else None,
        frozenset(str(m) for m in members),
        (level_limits("org", org_id, org_limits, zone),
         level_limits("team", team_id, team_limits, zone)),
        narrowed(models_of(org_limits), models_of(team_limits)),
    )  # fmt: skip


class Hierarchy:
    """Team id → ``TeamView``, rebuilt when a snapshot changes an org or team (a snapshot
    callback), so a request finds its levels with one lookup."""

    def __init__(self) -> None:
        self.teams: dict[str, TeamView] = {}
        self._seen: Snapshot | None = None

    def __call__(self, snapshot: Snapshot) -> None:
        previous, self._seen = self._seen, snapshot
        change = snapshot.change
        if previous is not None and change is not None and change[0] not in (ORGS, TEAMS):
            return
        orgs, found = snapshot.kind(ORGS), {}
        for team_id, team in snapshot.kind(TEAMS).items():
            org = orgs.get(str(team.get("org")))
            if org is None:
                continue  # an organization deleted under its team: the team's keys stop
            try:
                found[team_id] = team_view(team_id, team, org)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        self.teams = found


def check_binding(
    snapshot: Snapshot, team_id: str | None, user: str, models: Iterable[str] | None
) -> None:
    """400 unless a key of ``user`` may be bound to ``team_id`` (None: no team): the team
    exists, the user is a member, and the key's models lie within the team's and its
    organization's."""
    if team_id is None:
        return
    team = snapshot.kind(TEAMS).get(team_id)
    if team is None:
        raise InvalidRequest(f"No team '{team_id}'.", param="team")
    if user not in (team.get("members") or ()):
        raise InvalidRequest(f"'{user}' is not a member of team '{team_id}'.", param="user")
    org = snapshot.kind(ORGS).get(str(team.get("org"))) or {}
    allowed = narrowed(models_of(org.get("limits") or {}), models_of(team.get("limits") or {}))
    check_narrower(models, allowed, f"team '{team_id}'")
