"""Agent group access (group_access.py, and the plan's use of it): members get the union of the access
their Entra groups grant, as Zammad stores it (``group_ids``: {"<group id>": [verbs]}); only the
Zammad groups named in the config are managed, so access granted by hand elsewhere stays; leaving an
Entra group takes back what it gave; only agents get access (Zammad shows none for a customer, so
planning it would write on every run); a configured group that is missing or inactive is named.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from entrasync_pipeline import group_access as access
from entrasync_pipeline.plan import Action, compute_plan, group_access_changes
from entrasync_pipeline_tests.factories import GROUP, graph_user, plan_options, universal, zammad_frame, zammad_user

SECOND = "9a0f1b7c-0000-4000-8000-000000000002"
CONFIG = {GROUP: {"Service Desk": ("full",), "Users": ("read",)}, SECOND: {"Users": ("change", "read")}}
IDS = {"Service Desk": 2, "Users": 1}
AGENT_ROLE = 2


@pytest.mark.parametrize(
    "groups, expected",
    [
        ((GROUP,), {"Service Desk": ["full"], "Users": ["read"]}),
        ((SECOND,), {"Users": ["change", "read"]}),
        ((GROUP, SECOND), {"Service Desk": ["full"], "Users": ["change", "read"]}),
        (("no-access-group",), {}),
        ((), {}),
    ],
    ids=["one-group", "other-group", "union", "group-without-access", "no-group"],
)
def test_members_get_the_union_over_their_entra_groups(groups: tuple, expected: dict) -> None:
    assert access.wanted_access(groups, CONFIG) == expected


@pytest.mark.parametrize(
    "current, wanted, expected",
    [
        ({}, {"Users": ["read"]}, {"1": ["read"]}),
        ({"7": ["full"]}, {"Users": ["read"]}, {"1": ["read"], "7": ["full"]}),  # hand-granted: kept
        ({"1": ["full"], "7": ["read"]}, {}, {"7": ["read"]}),  # left the Entra group: managed access goes
        ({"2": ["full"], "1": ["read"]}, {"Users": ["read"]}, {"1": ["read"]}),  # left one of two
        ({1: "read"}, {"Users": ["read"]}, {"1": ["read"]}),  # key types and a single verb as Zammad may send
        (None, {"Service Desk": ["full"]}, {"2": ["full"]}),
        (float("nan"), {}, {}),
    ],
    ids=["grant", "hand-granted-kept", "leaving-removes", "left-one-of-two", "stored-form", "none", "nan"],
)
def test_the_desired_map_keeps_unmanaged_groups_and_replaces_managed_ones(
    current: Any, wanted: dict, expected: dict
) -> None:
    assert access.desired_map(current, wanted, IDS) == expected


def test_maps_compare_as_zammad_stores_them() -> None:
    assert access.same({"1": ["read", "full"]}, {1: ["full", "read"]})
    assert access.same(None, {}) and access.same(float("nan"), {})
    assert not access.same({"1": ["read"]}, {"1": ["full"]})
    assert not access.same({"1": ["read"]}, {"1": ["read"], "2": ["read"]})


def test_a_missing_or_inactive_group_is_named() -> None:
    problems = access.missing_groups(["Service Desk", "Users", "Archive"], {"Users": True, "Archive": False})
    assert len(problems) == 2
    assert "'Service Desk'" in problems[0] and "does not exist" in problems[0] and "Users" in problems[0]
    assert "'Archive'" in problems[1] and "inactive" in problems[1]
    assert access.missing_groups(["Users"], {"Users": True}) == []


# --- the plan ------------------------------------------------------------------------------------------
JANE = graph_user("jane.doe")
AGENT = zammad_user(10, "jane.doe@contoso.example", JANE["id"], role_ids=(AGENT_ROLE,), group_ids={})


def _options(**overrides: Any) -> Any:
    return plan_options(
        group_access=CONFIG, zammad_group_ids=IDS, agent_role_ids=frozenset({AGENT_ROLE}), **overrides
    )


def _one(users: pd.DataFrame, zammad: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    plan = compute_plan(users, zammad_frame(*zammad), _options(**overrides))
    assert len(plan) == 1, plan
    return plan.iloc[0].to_dict()


def test_an_agent_gets_the_access_of_their_group_and_a_second_plan_writes_nothing() -> None:
    row = _one(universal(JANE), [AGENT])
    assert row["action"] == Action.UPDATE.value
    assert row["payload"] == {"group_ids": {"1": ["read"], "2": ["full"]}}
    assert row["changes"]["group_ids"] == [{}, {"1": ["read"], "2": ["full"]}]
    applied = {**AGENT, "group_ids": {"2": ["full"], "1": ["read"]}}  # Zammad's order of keys
    again = _one(universal(JANE), [applied])
    assert again["action"] == Action.NOOP.value and again["reason"] is None


def test_hand_granted_access_to_an_unmanaged_group_is_kept() -> None:
    row = _one(universal(JANE), [{**AGENT, "group_ids": {"5": ["full"]}}])
    assert row["payload"] == {"group_ids": {"1": ["read"], "2": ["full"], "5": ["full"]}}


def test_leaving_the_entra_group_removes_the_access_it_gave() -> None:
    users = universal(JANE)
    users.at[0, "source_groups"] = (SECOND,)
    granted = {**AGENT, "group_ids": {"1": ["read"], "2": ["full"], "5": ["full"]}}
    row = _one(users, [granted])
    assert row["payload"] == {"group_ids": {"1": ["change", "read"], "5": ["full"]}}
    users.at[0, "source_groups"] = ("no-access-group",)
    assert _one(users, [granted])["payload"] == {"group_ids": {"5": ["full"]}}


def test_a_customer_gets_no_access_and_the_reason_says_why() -> None:
    customer = {**AGENT, "role_ids": (3,)}
    row = _one(universal(JANE), [customer])
    assert row["action"] == Action.NOOP.value and row["reason"] == access.NOT_AGENT_NOTE
    created = _one(universal(JANE), [])
    assert created["action"] == Action.CREATE.value and "group_ids" not in created["payload"]


def test_mapped_agent_roles_come_with_the_access_on_create() -> None:
    users = universal(JANE, group_roles={GROUP: ("Agent",)})
    row = _one(users, [], role_ids={"Admin": 1, "Agent": 2, "Customer": 3})
    assert row["payload"]["role_ids"] == [2] and row["payload"]["group_ids"] == {"1": ["read"], "2": ["full"]}


def test_the_column_wise_noop_path_leaves_access_to_the_per_user_rules() -> None:
    """A member whose groups grant nothing but who holds managed access is not a noop."""
    users = universal(JANE, graph_user("john.roe"))
    users["source_groups"] = [("no-access-group",), ("no-access-group",)]
    john = zammad_user(11, "john.roe@contoso.example", users.at[1, "entra_key"], role_ids=(2,), group_ids={})
    plan = compute_plan(users, zammad_frame({**AGENT, "group_ids": {"2": ["full"]}}, john), _options())
    assert sorted(plan["action"]) == ["noop", "update"]
    assert group_access_changes(plan) == 1
    assert plan[plan["action"] == "update"].iloc[0]["payload"] == {"group_ids": {}}


def test_without_zammad_groups_nothing_changes() -> None:
    plan = compute_plan(universal(JANE), zammad_frame({**AGENT, "group_ids": {"2": ["full"]}}), plan_options())
    assert list(plan["action"]) == ["noop"] and group_access_changes(plan) == 0
