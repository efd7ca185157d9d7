"""Organization and team documents (pure): limits checked and turned into metering units,
allow-lists narrowing, and the hierarchy a request's key is looked up in."""

from __future__ import annotations

import pytest

from gateway.control.orgs import (
    ORGS,
    TEAMS,
    Hierarchy,
    check_binding,
    check_limits,
    check_narrower,
    check_zone,
    narrowed,
)
from gateway.control.plane import Snapshot
from gateway.errors import InvalidRequest
from gateway.metering.types import Windowed

KNOWN = ("a", "b", "c")


def snapshot() -> Snapshot:
    return Snapshot(
        3,
        {
            ORGS: {"acme": {"timezone": "Asia/Tokyo", "limits": {"models": ["a", "b"]}}},
            TEAMS: {
                "ml": {"org": "acme", "tier": "free", "members": ["ann"],
                       "limits": {"models": ["a"], "budget_usd": {"day": 2.5},
                                  "tokens": {"month": 1000}, "max_parallel": 4}},
                "orphan": {"org": "gone", "tier": "free", "members": ["ann"]},
            },
        },
    )  # fmt: skip


def test_limits_are_checked_and_normalised() -> None:
    limits = check_limits(
        {"budget_usd": {"day": 1.5, "hour": None}, "requests": {}, "models": ["b", "a", "a"]},
        KNOWN,
    )
    assert limits == {"budget_usd": {"day": 1.5}, "models": ["a", "b"]}
    for bad in (
        {"budget_usd": {"week": 1}},
        {"requests": {"day": 1.5}},
        {"tokens": {"day": -1}},
        {"max_parallel": 0},
        {"max_parallel": True},
        {"models": ["nope"]},
        {"surprise": 1},
        [],
    ):
        with pytest.raises(InvalidRequest):
            check_limits(bad, KNOWN)


def test_zones_default_to_utc_and_must_be_known() -> None:
    assert check_zone(None) == "UTC" and check_zone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(InvalidRequest):
        check_zone("Europe/Atlantis")


def test_allow_lists_narrow_downward() -> None:
    wide = frozenset({"a", "b"})
    check_narrower(["a"], wide, "org")
    check_narrower(None, wide, "org")  # inherits: never wider
    with pytest.raises(InvalidRequest, match="'c' is not allowed by org"):
        check_narrower(["a", "c"], wide, "org")
    assert narrowed(None, wide, frozenset({"b", "c"})) == {"b"}
    assert narrowed(None, None) is None


def test_the_hierarchy_gives_a_teams_levels_and_skips_a_team_without_its_org() -> None:
    hierarchy = Hierarchy()
    hierarchy(snapshot())
    assert set(hierarchy.teams) == {"ml"}
    view = hierarchy.teams["ml"]
    org, team = view.levels
    assert (org.level, org.id, org.timezone) == ("org", "acme", "Asia/Tokyo")
    assert team.usd == Windowed(day=2_500_000) and team.tokens == Windowed(month=1000)
    assert team.max_parallel == 4 and view.models == {"a"} and view.members == {"ann"}


def test_a_key_binds_only_to_a_team_of_its_user_within_its_models() -> None:
    check_binding(snapshot(), "ml", "ann", ["a"])
    check_binding(snapshot(), None, "zed", ["c"])
    for team, user, models in (("ml", "zed", None), ("nope", "ann", None), ("ml", "ann", ["b"])):
        with pytest.raises(InvalidRequest):
            check_binding(snapshot(), team, user, models)
