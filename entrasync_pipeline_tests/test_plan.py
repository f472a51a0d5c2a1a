"""compute_plan: one test row per rule of DESIGN.md §2, plus properties (planning again on the
applied state yields only noop; users without entra_key and other profiles' users are never touched).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrasync_pipeline.plan import Action, compute_plan
from entrasync_pipeline_tests.factories import (
    PROFILE, graph_user, plan_options, universal, zammad_frame, zammad_user,
)

JANE = graph_user("jane.doe")
KEY = JANE["id"]


def _plan(users: list[dict], zammad: list[dict], **options: Any) -> pd.DataFrame:
    return compute_plan(universal(*users), zammad_frame(*zammad), plan_options(**options))


def _actions(plan: pd.DataFrame) -> list[str]:
    return sorted(plan["action"])


def _only(plan: pd.DataFrame, action: Action) -> dict:
    rows = plan[plan["action"] == action.value]
    assert len(rows) == 1, plan
    return rows.iloc[0].to_dict()


SYNCED = zammad_user(10, "jane.doe@contoso.example", KEY)


@pytest.mark.parametrize("users, zammad, expected", [
    ([JANE], [SYNCED], ["noop"]),
    ([JANE], [], ["create"]),
    ([JANE], [zammad_user(10, "jane.doe@contoso.example")], ["update"]),
    ([JANE], [zammad_user(10, "JANE.DOE@contoso.example", "other-key")], ["conflict"]),
    ([JANE], [{**SYNCED, "active": False}], ["reactivate"]),
    ([], [SYNCED], ["deactivate"]),
    ([graph_user("jane.doe", accountEnabled=False)], [SYNCED], ["deactivate"]),
    ([graph_user("jane.doe", accountEnabled=False)], [], ["skip"]),
    ([], [zammad_user(10, "walk-in@example.org")], []),
    ([], [{**SYNCED, "active": False}], []),
    ([], [zammad_user(10, "jane.doe@contoso.example", KEY, profile="other")], []),
    ([JANE], [zammad_user(10, "jane.doe@contoso.example", KEY, profile="other")], ["conflict"]),
    ([JANE, graph_user("john.roe", mail="jane.doe@contoso.example")], [], ["conflict", "conflict"]),
    ([JANE], [zammad_user(10, "jane.doe@contoso.example"), zammad_user(11, "Jane.Doe@contoso.example")], ["conflict"]),
    ([JANE], [SYNCED, {**SYNCED, "id": 11}], ["conflict"]),
    ([graph_user("jane.doe", mail=None, otherMails=[], userPrincipalName="j_x.example#EXT#@t.onmicrosoft.com")], [],
     ["skip"]),
], ids=["no-change", "create", "adopt-by-email", "email-conflict", "reactivate", "deactivate-leaver",
        "deactivate-disabled", "disabled-never-synced", "unmanaged-untouched", "inactive-leaver-untouched",
        "other-profile-leaver-untouched", "other-profile-in-scope-conflict", "two-entra-users-one-email",
        "two-zammad-users-one-email", "two-zammad-users-one-key", "no-email-skip"])
def test_decisions(users: list[dict], zammad: list[dict], expected: list[str]) -> None:
    assert _actions(_plan(users, zammad)) == expected


def test_update_changes_only_differing_fields() -> None:
    row = _only(_plan([graph_user("jane.doe", department="Sales")], [SYNCED]), Action.UPDATE)
    assert row["changes"] == {"department": ["IT", "Sales"]}
    assert row["payload"] == {"department": "Sales"}
    assert row["zammad_id"] == 10


def test_adoption_writes_the_entra_identity() -> None:
    row = _only(_plan([JANE], [zammad_user(10, "jane.doe@contoso.example")]), Action.UPDATE)
    assert row["payload"]["entra_key"] == KEY
    assert row["payload"]["entra_object_type"] == "user" and row["payload"]["entrasync_profile"] == PROFILE
    assert row["reason"] == "adopted by email"


def test_adoption_can_be_switched_off() -> None:
    row = _only(_plan([JANE], [zammad_user(10, "jane.doe@contoso.example")], adopt_by_email=False), Action.CONFLICT)
    assert "adoption by email is off" in row["reason"]


def test_email_change_updates_the_same_zammad_user() -> None:
    renamed = graph_user("jane.doe", mail="jane.smith@contoso.example", surname="Smith")
    row = _only(_plan([renamed], [SYNCED]), Action.UPDATE)
    assert row["zammad_id"] == 10
    assert row["changes"]["email"] == ["jane.doe@contoso.example", "jane.smith@contoso.example"]


def test_email_change_onto_another_users_address_is_a_conflict() -> None:
    renamed = graph_user("jane.doe", mail="taken@contoso.example")
    plan = _plan([renamed], [SYNCED, zammad_user(11, "taken@contoso.example")])
    assert "belongs to Zammad user #11" in _only(plan, Action.CONFLICT)["reason"]


def test_create_payload_carries_identity_and_mapped_fields() -> None:
    row = _only(_plan([JANE], []), Action.CREATE)
    assert row["payload"] == {"email": "jane.doe@contoso.example", "firstname": "Jane", "lastname": "Doe",
                              "phone": "+1 555 0100", "department": "IT", "entra_key": KEY,
                              "entra_object_type": "user", "entrasync_profile": PROFILE}
    assert pd.isna(row["zammad_id"])


@pytest.mark.parametrize("zammad, reason", [
    (zammad_user(10, "jane.doe@contoso.example", KEY, role_ids=(1, 2), department="Old"), "holds the Admin role"),
    (zammad_user(10, "jane.doe@contoso.example", KEY, department="Old"), "protected account (id 10)"),
], ids=["protected-admin", "protected-id"])
def test_protected_accounts_are_never_modified(zammad: dict, reason: str) -> None:
    row = _only(_plan([JANE], [zammad], protected_ids=frozenset({10}) if "id 10" in reason else frozenset()),
                Action.SKIP)
    assert reason in row["reason"]


def test_protected_leaver_is_not_deactivated() -> None:
    plan = _plan([], [SYNCED], protected_emails=frozenset({"jane.doe@contoso.example"}))
    assert _actions(plan) == ["skip"]


def test_system_user_is_ignored() -> None:
    plan = _plan([], [zammad_user(1, "system@example.org", "k", active=True)])
    assert plan.empty


def test_roles_from_the_group_mapping() -> None:
    users = universal(JANE, group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Agent",)})
    options = plan_options(role_ids={"Admin": 1, "Agent": 2, "Customer": 3})
    plan = compute_plan(users, zammad_frame(SYNCED), options)
    assert _only(plan, Action.UPDATE)["changes"]["role_ids"] == [[3], [2]]
    unknown = compute_plan(universal(JANE, group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Wizard",)}),
                           zammad_frame(SYNCED), options)
    assert "Wizard" in _only(unknown, Action.CONFLICT)["reason"]


def test_roles_are_left_alone_without_a_mapping() -> None:
    plan = _plan([JANE], [{**SYNCED, "role_ids": (2,)}])
    assert _actions(plan) == ["noop"]


def test_the_plan_is_deterministic() -> None:
    users, zammad = [JANE, graph_user("john.roe")], [SYNCED, zammad_user(12, "gone@contoso.example", "k2")]
    assert _plan(users, zammad).equals(_plan(users, zammad))


# --- properties ----------------------------------------------------------------------------------
_names = st.sampled_from(["ann.lee", "bo.kim", "cy.ng", "di.oh", "ed.yu", "fay.li", "gus.wu", "hal.xu"])
_people = st.lists(st.tuples(_names, st.booleans(), st.sampled_from(["IT", "Sales", None, "Ops"]),
                             st.sampled_from([None, "x", "Mixed Case"])), max_size=8, unique_by=lambda t: t[0])


def _apply(plan: pd.DataFrame, zammad: pd.DataFrame) -> pd.DataFrame:
    """A model of Zammad applying the plan (what a perfect apply would leave)."""
    users = {int(z["id"]): dict(z) for z in zammad.to_dict("records")}
    next_id = max(users) + 1
    for row in plan.to_dict("records"):
        if row["action"] == "create":
            users[next_id] = {"id": next_id, "login": row["payload"]["email"], "active": True, "role_ids": (3,),
                              "mobile": "", "phone": "", "department": "", **row["payload"]}
            next_id += 1
        elif row["action"] in ("update", "reactivate", "deactivate"):
            users[int(row["zammad_id"])].update(row["payload"])
    return pd.DataFrame(list(users.values()))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_people, st.lists(st.tuples(_names, st.booleans(), st.booleans()), max_size=6, unique_by=lambda t: t[0]))
def test_planning_again_on_the_applied_state_yields_only_noop(people: list, existing: list) -> None:
    users = [graph_user(n, accountEnabled=enabled, department=dept, givenName=given or n.split(".")[0])
             for n, enabled, dept, given in people]
    zammad = [zammad_user(100 + i, f"{n}@contoso.example", graph_user(n)["id"] if keyed else None, active=active)
              for i, (n, keyed, active) in enumerate(existing)]
    universal_users = universal(*users)
    first = compute_plan(universal_users, zammad_frame(*zammad), plan_options())
    applied = _apply(first, zammad_frame(*zammad))
    second = compute_plan(universal_users, applied, plan_options())
    assert set(second["action"]) <= {"noop", "skip", "conflict"}, second[second["action"].isin(
        ["create", "update", "reactivate", "deactivate"])].to_dict("records")


@settings(max_examples=250, deadline=None)
@given(st.lists(st.tuples(_names, st.booleans(), st.sampled_from([PROFILE, "other", None])), max_size=8,
                unique_by=lambda t: t[0]))
def test_only_this_profiles_managed_users_are_ever_deactivated(existing: list) -> None:
    zammad = [zammad_user(100 + i, f"{n}@contoso.example", graph_user(n)["id"] if keyed else None, profile=owner)
              for i, (n, keyed, owner) in enumerate(existing)]
    plan = compute_plan(universal(), zammad_frame(*zammad), plan_options())
    deactivated = set(plan.loc[plan["action"] == "deactivate", "zammad_id"].astype(int))
    expected = {100 + i for i, (_, keyed, owner) in enumerate(existing) if keyed and owner == PROFILE}
    assert deactivated == expected


def test_conflicting_group_role_mappings_are_merged_and_reported() -> None:
    from entrasync_pipeline.plan import ROLE_MERGE_NOTE

    users = universal(JANE, group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Agent",)})
    users.at[0, "source_groups"] = ("9a0f1b7c-0000-4000-8000-000000000001", "g2")
    users.at[0, "roles"] = ("Agent", "Customer")
    options = plan_options(role_ids={"Admin": 1, "Agent": 2, "Customer": 3},
                           group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Agent",), "g2": ("Customer",)})
    row = _only(compute_plan(users, zammad_frame(), options), Action.CREATE)
    assert row["payload"]["role_ids"] == [2, 3] and ROLE_MERGE_NOTE in row["reason"]
