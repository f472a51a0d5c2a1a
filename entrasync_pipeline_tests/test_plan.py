"""compute_plan: one test row per rule of DESIGN.md §2 and of issue 12 (scope rules, leaving and the
grace period, opt-out, hand edits, re-hires, adoption by login), plus properties (planning again on
the applied state writes nothing, whatever the rules; users without entra_key and other profiles'
users are never touched; every member gets one decision that names them; a protected or opted-out
account is never written; the column-wise noop path and leaver filter decide exactly like the
per-user rules). Also what a run
reports of a plan (counts, writes, reviewed changes). ``make mutation`` measures how much of
plan.py these tests hold (docs/mutation.md).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from entrasync_pipeline import plan as rules
from entrasync_pipeline.normalize import NO_EMAIL_REASON, ScopeTest, normalize_members
from entrasync_pipeline.plan import PLAN_COLUMNS, Action, compute_plan
from entrasync_pipeline_tests.factories import (
    GROUP,
    PROFILE,
    graph_user,
    members_frame,
    normalize_options,
    plan_options,
    universal,
    zammad_frame,
    zammad_user,
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


@pytest.mark.parametrize(
    "users, zammad, expected",
    [
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
        (
            [JANE],
            [zammad_user(10, "jane.doe@contoso.example"), zammad_user(11, "Jane.Doe@contoso.example")],
            ["conflict"],
        ),
        ([JANE], [SYNCED, {**SYNCED, "id": 11}], ["conflict"]),
        (
            [graph_user("jane.doe", mail=None, otherMails=[], userPrincipalName="j_x.example#EXT#@t.onmicrosoft.com")],
            [],
            ["skip"],
        ),
    ],
    ids=[
        "no-change",
        "create",
        "adopt-by-email",
        "email-conflict",
        "reactivate",
        "deactivate-leaver",
        "deactivate-disabled",
        "disabled-never-synced",
        "unmanaged-untouched",
        "inactive-leaver-untouched",
        "other-profile-leaver-untouched",
        "other-profile-in-scope-conflict",
        "two-entra-users-one-email",
        "two-zammad-users-one-email",
        "two-zammad-users-one-key",
        "no-email-skip",
    ],
)
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
    plan = _plan([renamed], [SYNCED, zammad_user(11, "Taken@contoso.example")])
    assert plan.to_dict("records") == [
        {
            "action": "conflict",
            "entra_key": KEY,
            "zammad_id": 10,
            "email": "taken@contoso.example",
            "upn": "jane.doe@contoso.example",
            "changes": {},
            "payload": {},
            "reason": "new email taken@contoso.example belongs to Zammad user #11",
        }
    ]


JOHN = graph_user("john.roe")
JOHN_SYNCED = zammad_user(11, "john.roe@contoso.example", JOHN["id"])


def _emails(plan: pd.DataFrame) -> list[tuple[str, Any, str | None]]:
    return [(r["action"], r["zammad_id"], r["email"]) for r in plan.to_dict("records")]


def test_an_address_given_up_in_the_same_plan_is_granted_and_written_after_the_move() -> None:
    jane = graph_user("jane.doe", mail="jane.smith@contoso.example")
    john = graph_user("john.roe", mail="jane.doe@contoso.example")  # takes Jane's old address
    plan = _plan([john, jane], [SYNCED, JOHN_SYNCED])
    assert _emails(plan) == [
        ("update", 11, "jane.doe@contoso.example"),
        ("update", 10, "jane.smith@contoso.example"),
    ]
    layers = rules.write_layers(rules.writes_of(plan).to_dict("records"))
    assert [[row["zammad_id"] for row in layer] for layer in layers] == [[10], [11]]


def test_a_chain_of_moves_is_granted_link_by_link_and_written_from_its_end() -> None:
    max_ = graph_user("max.muster")
    users = [
        graph_user("jane.doe", mail="john.roe@contoso.example"),  # takes John's
        graph_user("john.roe", mail="max.muster@contoso.example"),  # takes Max's
        {**max_, "mail": "max.new@contoso.example"},  # frees his
    ]
    zammad = [SYNCED, JOHN_SYNCED, zammad_user(12, "max.muster@contoso.example", max_["id"])]
    plan = _plan(users, zammad)
    assert _actions(plan) == ["update", "update", "update"]
    layers = rules.write_layers(rules.writes_of(plan).to_dict("records"))
    assert [[row["zammad_id"] for row in layer] for layer in layers] == [[12], [11], [10]]


def test_a_swap_of_addresses_stays_a_conflict_both_ways() -> None:
    """No order of writes can swap two addresses in Zammad (each would be refused with 422)."""
    jane = graph_user("jane.doe", mail="john.roe@contoso.example")
    john = graph_user("john.roe", mail="jane.doe@contoso.example")
    plan = _plan([jane, john], [SYNCED, JOHN_SYNCED])
    assert plan[["action", "zammad_id", "reason"]].to_dict("records") == [
        {
            "action": "conflict",
            "zammad_id": 10,
            "reason": "new email john.roe@contoso.example belongs to Zammad user #11",
        },
        {
            "action": "conflict",
            "zammad_id": 11,
            "reason": "new email jane.doe@contoso.example belongs to Zammad user #10",
        },
    ]


def test_an_address_whose_holder_cannot_move_stays_taken() -> None:
    """Jane's move is refused (her new address is held), so John cannot take her old one either."""
    jane = graph_user("jane.doe", mail="held@contoso.example")
    john = graph_user("john.roe", mail="jane.doe@contoso.example")
    plan = _plan([jane, john], [SYNCED, JOHN_SYNCED, zammad_user(12, "held@contoso.example")])
    assert _actions(plan) == ["conflict", "conflict"]
    assert "belongs to Zammad user #10" in _only(plan.iloc[[1]], Action.CONFLICT)["reason"]


def test_a_new_member_gets_the_address_its_linked_holder_gives_up_in_the_same_plan() -> None:
    jane = graph_user("jane.doe", mail="jane.smith@contoso.example")
    hire = graph_user("jane.doe.2", mail="jane.doe@contoso.example")
    plan = _plan([hire, jane], [SYNCED])
    assert _emails(plan) == [("create", None, "jane.doe@contoso.example"), ("update", 10, "jane.smith@contoso.example")]
    layers = rules.write_layers(rules.writes_of(plan).to_dict("records"))
    assert [[row["action"] for row in layer] for layer in layers] == [["update"], ["create"]]
    # a holder that keeps the address (a leaver keeps it when deactivated) keeps the hire a conflict
    plan = _plan([hire], [SYNCED])
    assert _only(plan, Action.CONFLICT)["reason"] == "email belongs to Zammad user #10, linked to another Entra object"


def test_a_disabled_account_with_a_colleagues_mail_does_not_hold_the_colleague_up() -> None:
    """A disabled account claims no address: the active one with the same mail is decided alone."""
    guest = graph_user("grace.guest", mail="jane.doe@contoso.example", accountEnabled=False)
    zammad = [SYNCED, zammad_user(12, "grace.guest@contoso.example", guest["id"], active=False)]
    renamed = graph_user("jane.doe", surname="Doe-Smith")
    plan = _plan([renamed, guest], zammad)
    assert plan[["action", "zammad_id"]].to_dict("records") == [
        {"action": "update", "zammad_id": 10},
        {"action": "skip", "zammad_id": 12},
    ]
    # enabled, the two share the address, and both are held until a person decides
    plan = _plan([renamed, {**guest, "accountEnabled": True}], zammad)
    assert _actions(plan) == ["conflict", "conflict"]


def test_two_hires_for_one_freed_address_are_both_conflicts() -> None:
    jane = graph_user("jane.doe", mail="jane.smith@contoso.example")
    hires = [graph_user(f"hire.{n}", mail="jane.doe@contoso.example") for n in (1, 2)]
    plan = _plan([*hires, jane], [SYNCED])
    assert _actions(plan) == ["conflict", "conflict", "update"]


def test_writes_without_moves_are_one_layer_in_plan_order() -> None:
    plan = _plan([JANE, JOHN, graph_user("max.muster")], [])
    writes = rules.writes_of(plan).to_dict("records")
    assert rules.write_layers(writes) == [writes]
    assert rules.write_layers([]) == []


def test_create_payload_carries_identity_and_mapped_fields() -> None:
    row = _only(_plan([JANE], []), Action.CREATE)
    assert row["payload"] == {
        "email": "jane.doe@contoso.example",
        "firstname": "Jane",
        "lastname": "Doe",
        "phone": "+1 555 0100",
        "department": "IT",
        "entra_key": KEY,
        "entra_object_type": "user",
        "entrasync_profile": PROFILE,
    }
    assert pd.isna(row["zammad_id"])


@pytest.mark.parametrize(
    "zammad, reason",
    [
        (zammad_user(10, "jane.doe@contoso.example", KEY, role_ids=(1, 2), department="Old"), "holds the Admin role"),
        (zammad_user(10, "jane.doe@contoso.example", KEY, department="Old"), "protected account (id 10)"),
    ],
    ids=["protected-admin", "protected-id"],
)
def test_protected_accounts_are_never_modified(zammad: dict, reason: str) -> None:
    row = _only(
        _plan([JANE], [zammad], protected_ids=frozenset({10}) if "id 10" in reason else frozenset()), Action.SKIP
    )
    assert reason in row["reason"]


def test_protected_leaver_is_not_deactivated() -> None:
    plan = _plan([], [SYNCED], protected_emails=frozenset({"jane.doe@contoso.example"}))
    assert _actions(plan) == ["skip"]


@pytest.mark.parametrize(
    "zammad", [pd.DataFrame(), pd.DataFrame(columns=["id", "email"])], ids=["no-columns", "no-users"]
)
def test_every_member_is_created_in_an_empty_zammad(zammad: pd.DataFrame) -> None:
    plan = compute_plan(universal(JANE, graph_user("john.roe")), zammad, plan_options())
    assert plan["action"].tolist() == ["create", "create"] and plan["zammad_id"].isna().all()
    assert compute_plan(universal(), zammad, plan_options()).empty


def test_a_zammad_without_the_entra_attributes_has_no_managed_users_to_deactivate() -> None:
    """Before ``entrasync zammad-setup`` Zammad has no entra_key, entra_object_type or entrasync_profile."""
    zammad = zammad_frame(zammad_user(10, "jane.doe@contoso.example"), zammad_user(11, "walk-in@example.org"))
    zammad = zammad.drop(columns=list(rules.IDENTITY_FIELDS))
    plan = compute_plan(universal(JANE, graph_user("john.roe")), zammad, plan_options())
    assert plan[["action", "zammad_id", "reason"]].to_dict("records") == [
        {"action": "update", "zammad_id": 10, "reason": "adopted by email"},
        {"action": "create", "zammad_id": None, "reason": "new member"},
    ]


@pytest.mark.parametrize(
    "users, zammad",
    [
        ([JANE], [SYNCED]),
        ([graph_user("jane.doe", department="Sales")], [SYNCED]),
        ([JANE, graph_user("john.roe")], [SYNCED]),
        ([], [SYNCED]),
        ([], []),
    ],
    ids=["only-noop", "only-decided", "noop-and-create", "only-leavers", "nothing"],
)
def test_the_zammad_id_of_a_plan_is_a_nullable_integer_column(users: list[dict], zammad: list[dict]) -> None:
    plan = _plan(users, zammad)
    assert plan["zammad_id"].dtype == "Int64" and list(plan.columns) == list(PLAN_COLUMNS)
    assert plan.index.equals(pd.RangeIndex(len(plan)))


def test_system_user_is_ignored() -> None:
    plan = _plan([], [zammad_user(1, "system@example.org", "k", active=True)])
    assert plan.empty


@pytest.mark.parametrize("where", ["first", "second", "last", "absent"])
def test_the_system_user_is_never_planned_wherever_zammad_lists_it(where: str) -> None:
    system = zammad_user(1, "system@example.org", "k1")
    john = zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"])
    listing = {
        "first": [system, SYNCED, john],
        "second": [SYNCED, system, john],
        "last": [SYNCED, john, system],
        "absent": [SYNCED, john],
    }[where]
    plan = compute_plan(universal(JANE, graph_user("john.roe")), pd.DataFrame(listing), plan_options())
    assert plan[["action", "zammad_id"]].to_dict("records") == [
        {"action": "noop", "zammad_id": 10},
        {"action": "noop", "zammad_id": 11},
    ]
    assert _actions(compute_plan(universal(JANE), pd.DataFrame([SYNCED]), plan_options())) == ["noop"]
    assert _actions(compute_plan(universal(), pd.DataFrame(listing), plan_options())) == ["deactivate", "deactivate"]


def test_a_zammad_user_without_entra_key_is_never_deactivated_even_if_marked_as_ours() -> None:
    """DESIGN.md §2: users without entra_key are never deactivated (a key cleared by hand, a half-written identity)."""
    keyless = [zammad_user(11, "x@contoso.example", None, entrasync_profile=PROFILE, entra_object_type="user")]
    blank = [zammad_user(12, "y@contoso.example", "", entrasync_profile=PROFILE, entra_object_type="user")]
    plan = _plan([], [SYNCED, *keyless, *blank])
    assert plan[["action", "zammad_id"]].to_dict("records") == [{"action": "deactivate", "zammad_id": 10}]
    assert _plan([JANE], [SYNCED, *keyless, *blank])["action"].tolist() == ["noop"]


def test_the_plan_follows_the_members_order_whatever_the_index_of_their_frame() -> None:
    members = universal(graph_user("ann.lee"), JANE, graph_user("john.roe", department="Sales"), graph_user("bo.kim"))
    members.index = [7, 3, 5, 1]
    zammad = [SYNCED, zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"])]
    plan = compute_plan(members, zammad_frame(*zammad), plan_options())
    assert plan[["action", "entra_key"]].to_dict("records") == [
        {"action": "create", "entra_key": graph_user("ann.lee")["id"]},
        {"action": "noop", "entra_key": KEY},
        {"action": "update", "entra_key": graph_user("john.roe")["id"]},
        {"action": "create", "entra_key": graph_user("bo.kim")["id"]},
    ]
    assert plan.index.equals(pd.RangeIndex(4))


def test_roles_from_the_group_mapping() -> None:
    users = universal(JANE, group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Agent",)})
    options = plan_options(role_ids={"Admin": 1, "Agent": 2, "Customer": 3})
    plan = compute_plan(users, zammad_frame(SYNCED), options)
    assert _only(plan, Action.UPDATE)["changes"]["role_ids"] == [[3], [2]]
    unknown = compute_plan(
        universal(JANE, group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Wizard",)}),
        zammad_frame(SYNCED),
        options,
    )
    assert "Wizard" in _only(unknown, Action.CONFLICT)["reason"]


def test_roles_that_zammad_does_not_have_are_a_conflict_naming_them() -> None:
    users = universal(JANE, group_roles={GROUP: ("Wizard", "Agent", "Ghost")})
    row = _only(compute_plan(users, zammad_frame(SYNCED), plan_options(role_ids=_ROLE_IDS)), Action.CONFLICT)
    assert row["reason"] == "role(s) Ghost, Wizard do not exist in Zammad"
    assert row["zammad_id"] == 10 and row["payload"] == {} and row["entra_key"] == KEY


@pytest.mark.parametrize(
    "group_roles, source_groups, note",
    [
        ({GROUP: ("Agent",)}, (GROUP,), None),
        ({GROUP: ("Agent",), "g2": ()}, (GROUP, "g2"), None),
        ({GROUP: ("Agent",), "g2": ("Agent",)}, (GROUP, "g2"), None),
        ({GROUP: ("Agent",), "g2": ("Customer",)}, (GROUP, "g2"), rules.ROLE_MERGE_NOTE),
    ],
    ids=["one-group", "a-group-without-roles", "two-groups-same-roles", "two-groups-different-roles"],
)
def test_conflicting_group_role_mappings_are_noted_on_every_decision(
    group_roles: dict, source_groups: tuple, note: str | None
) -> None:
    users = universal(JANE, group_roles=group_roles)
    users.at[0, "source_groups"] = source_groups
    roles = sorted({r for g in source_groups for r in group_roles[g]})
    users.at[0, "roles"] = tuple(roles)
    options = plan_options(role_ids=_ROLE_IDS, group_roles=group_roles)
    role_ids = tuple(sorted(_ROLE_IDS[r] for r in roles))
    for zammad, action, reason in (
        ([], "create", "new member"),
        ([{**SYNCED, "role_ids": (3,)}], "update", "attributes changed"),
        ([{**SYNCED, "role_ids": role_ids, "active": False}], "reactivate", "member again"),
        ([{**SYNCED, "role_ids": role_ids}], "noop", None),
    ):
        row = _only(compute_plan(users, zammad_frame(*zammad), options), Action(action))
        expected = "; ".join(filter(None, [reason, note])) or None
        assert row["reason"] == expected, action


def test_a_zammad_user_whose_roles_are_unknown_gets_the_mapped_roles() -> None:
    zammad = zammad_frame(SYNCED)
    zammad["role_ids"] = zammad["role_ids"].astype(object)
    zammad.loc[zammad["id"] == 10, "role_ids"] = float("nan")
    users = universal(JANE, group_roles={GROUP: ("Agent",)})
    row = _only(compute_plan(users, zammad, plan_options(role_ids=_ROLE_IDS)), Action.UPDATE)
    assert row["changes"] == {"role_ids": [[], [2]]} and row["payload"] == {"role_ids": [2]}


def test_roles_are_left_alone_without_a_mapping() -> None:
    plan = _plan([JANE], [{**SYNCED, "role_ids": (2,)}])
    assert _actions(plan) == ["noop"]


def test_the_plan_is_deterministic() -> None:
    users, zammad = [JANE, graph_user("john.roe")], [SYNCED, zammad_user(12, "gone@contoso.example", "k2")]
    assert _plan(users, zammad).equals(_plan(users, zammad))


_ZAMMAD_CASE = {**SYNCED, "login": "JANE.DOE@Contoso.Example", "email": "Jane.Doe@Contoso.Example"}
_PROTECTED_BY = {
    "id": ({"protected_ids": frozenset({10})}, (3,), "protected account (id 10)"),
    "login": (
        {"protected_logins": frozenset({"jane.doe@contoso.example"})},
        (3,),
        "protected account (login JANE.DOE@Contoso.Example)",
    ),
    "email": ({"protected_emails": frozenset({"jane.doe@contoso.example"})}, (3,), "protected account (email)"),
    "admin-role": ({}, (2, 1), "protected account (holds the Admin role)"),
}
_SITUATIONS = {
    "unchanged-member": ([JANE], {}, ""),
    "changed-member": ([graph_user("jane.doe", department="Sales")], {}, ""),
    "inactive-member": ([JANE], {"active": False}, ""),
    "disabled-in-entra": ([graph_user("jane.doe", accountEnabled=False)], {}, ""),
    "leaver": ([], {}, "; no longer a member of the configured groups"),
}


@pytest.mark.parametrize("situation", list(_SITUATIONS))
@pytest.mark.parametrize("protection", list(_PROTECTED_BY))
def test_a_protected_account_is_never_modified_whatever_the_case_of_its_login_or_email(
    protection: str, situation: str
) -> None:
    """The configured lists are lower-cased by the settings; Zammad's login and email come in any case."""
    options, role_ids, reason = _PROTECTED_BY[protection]
    users, overrides, suffix = _SITUATIONS[situation]
    plan = _plan(users, [{**_ZAMMAD_CASE, "role_ids": role_ids, **overrides}], **options)
    member = {"email": "jane.doe@contoso.example", "upn": "jane.doe@contoso.example"} if users else {}
    assert plan.to_dict("records") == [
        {
            "action": "skip",
            "entra_key": KEY,
            "zammad_id": 10,
            "email": "Jane.Doe@Contoso.Example",
            "upn": None,
            "changes": {},
            "payload": {},
            "reason": reason + suffix,
            **member,
        }
    ]


@pytest.mark.parametrize(
    "users, action",
    [([JANE], "noop"), ([graph_user("jane.doe", department="Sales")], "update"), ([], "deactivate")],
    ids=["unchanged-member", "changed-member", "leaver"],
)
def test_an_admin_is_an_ordinary_user_when_admin_protection_is_off(users: list[dict], action: str) -> None:
    plan = _plan(users, [{**SYNCED, "role_ids": (1, 2)}], protect_admins=False)
    assert _actions(plan) == [action]


@pytest.mark.parametrize("role_ids", [[1, 2], [2, 1], (3, 1)], ids=["list", "list-admin-last", "tuple"])
def test_an_admin_is_protected_whether_its_role_ids_come_as_a_list_or_a_tuple(role_ids: Any) -> None:
    """Zammad's JSON gives lists; the Zammad reader may hand over tuples."""
    others = [zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"], role_ids=[3])]
    plan = _plan([JANE, graph_user("john.roe")], [{**SYNCED, "role_ids": role_ids}, *others])
    assert plan[["action", "zammad_id", "reason"]].to_dict("records") == [
        {"action": "skip", "zammad_id": 10, "reason": "protected account (holds the Admin role)"},
        {"action": "noop", "zammad_id": 11, "reason": None},
    ]


@pytest.mark.parametrize(
    "protection",
    [
        {"protected_ids": frozenset({11})},
        {"protected_logins": frozenset({"jane.doe"})},
        {"protected_emails": frozenset({"john.roe@contoso.example"})},
        {"admin_role_ids": frozenset({7})},
    ],
    ids=["other-id", "login-is-not-an-email-prefix", "other-email", "other-admin-role"],
)
def test_a_protection_of_someone_else_leaves_the_user_to_the_rules(protection: dict) -> None:
    for users, expected in (
        ([JANE], "noop"),
        ([graph_user("jane.doe", department="Sales")], "update"),
        ([], "deactivate"),
    ):
        assert _actions(_plan(users, [{**_ZAMMAD_CASE, "role_ids": (3, 2)}], **protection)) == [expected]


def test_a_protected_leaver_does_not_shield_the_leavers_after_it() -> None:
    leavers = [
        SYNCED,
        zammad_user(11, "john.roe@contoso.example", "k2"),
        zammad_user(12, "max.moe@contoso.example", "k3"),
    ]
    plan = _plan([], leavers, protected_ids=frozenset({10}))
    assert plan[["action", "zammad_id"]].to_dict("records") == [
        {"action": "skip", "zammad_id": 10},
        {"action": "deactivate", "zammad_id": 11},
        {"action": "deactivate", "zammad_id": 12},
    ]


def test_a_leaver_is_deactivated_and_nothing_else_is_written() -> None:
    row = _only(_plan([], [SYNCED]), Action.DEACTIVATE)
    assert row == {
        "action": "deactivate",
        "entra_key": KEY,
        "zammad_id": 10,
        "email": "jane.doe@contoso.example",
        "upn": None,
        "changes": {"active": [True, False]},
        "payload": {"active": False},
        "reason": "no longer a member of the configured groups",
    }


def test_a_member_disabled_in_entra_is_deactivated_naming_the_reason() -> None:
    zammad = {**SYNCED, "email": "Jane.Doe@contoso.example"}
    row = _only(_plan([graph_user("jane.doe", accountEnabled=False)], [zammad]), Action.DEACTIVATE)
    assert row["payload"] == {"active": False} and row["changes"] == {"active": [True, False]}
    assert row["reason"] == "account disabled in Entra (accountEnabled false)" and row["zammad_id"] == 10
    assert (row["entra_key"], row["email"], row["upn"]) == (KEY, "jane.doe@contoso.example", "jane.doe@contoso.example")


@pytest.mark.parametrize(
    "zammad",
    [[], [zammad_user(10, "jane.doe@contoso.example")], [{**SYNCED, "active": False}], [{**SYNCED, "entra_key": None}]],
    ids=["never-synced", "walk-in-with-the-email", "already-inactive", "keyless-twin"],
)
def test_a_member_disabled_in_entra_is_skipped_when_nothing_of_ours_is_active(zammad: list[dict]) -> None:
    row = _only(_plan([graph_user("jane.doe", accountEnabled=False)], zammad), Action.SKIP)
    assert row["reason"] == "account disabled in Entra" and row["payload"] == {} and row["changes"] == {}
    assert row["zammad_id"] == (10 if zammad else None) and row["entra_key"] == KEY


def test_a_member_managed_by_another_profile_is_a_conflict_naming_that_profile() -> None:
    plan = _plan([graph_user("jane.doe", department="Sales")], [{**SYNCED, "entrasync_profile": "other"}])
    assert plan[["action", "entra_key", "zammad_id", "upn", "changes", "reason"]].to_dict("records") == [
        {
            "action": "conflict",
            "entra_key": KEY,
            "zammad_id": 10,
            "upn": "jane.doe@contoso.example",
            "changes": {},
            "reason": "managed by profile 'other'",
        }
    ]


def test_an_unchanged_member_is_a_noop_row_naming_both_sides() -> None:
    assert _plan([JANE], [SYNCED]).to_dict("records") == [
        {
            "action": "noop",
            "entra_key": KEY,
            "zammad_id": 10,
            "email": "jane.doe@contoso.example",
            "upn": "jane.doe@contoso.example",
            "changes": {},
            "payload": {},
            "reason": None,
        }
    ]


def test_two_zammad_users_with_one_entra_key_are_a_conflict_and_neither_is_deactivated() -> None:
    twin = {**SYNCED, "id": 11, "email": "j.doe@contoso.example", "login": "j.doe@contoso.example"}
    plan = _plan([JANE], [SYNCED, twin])
    assert plan[["action", "zammad_id", "reason"]].to_dict("records") == [
        {"action": "conflict", "zammad_id": None, "reason": "several Zammad users carry this entra_key (#10, #11)"}
    ]


@pytest.mark.parametrize(
    "zammad, reason",
    [
        (
            [zammad_user(10, "jane.doe@contoso.example"), zammad_user(11, "JANE.DOE@contoso.example")],
            "several Zammad users have this email (#10, #11)",
        ),
        (
            [zammad_user(10, "Jane.Doe@contoso.example", "other-key")],
            "email belongs to Zammad user #10, linked to another Entra object",
        ),
        (
            [zammad_user(10, "jane.doe@contoso.example"), zammad_user(11, "jane.doe@contoso.example", "other-key")],
            "email belongs to Zammad user #11, linked to another Entra object",
        ),
    ],
    ids=["two-walk-ins", "linked-to-another-object", "walk-in-and-linked"],
)
def test_an_email_we_cannot_place_is_a_conflict_and_its_owners_are_left_alone(zammad: list[dict], reason: str) -> None:
    plan = _plan([JANE], zammad)
    assert plan[["action", "entra_key", "reason"]].to_dict("records") == [
        {"action": "conflict", "entra_key": KEY, "reason": reason}
    ]


def test_two_entra_users_with_one_email_are_both_conflicts_and_the_zammad_owner_is_left_alone() -> None:
    john = graph_user("john.roe", mail="JANE.DOE@contoso.example")
    shared = "2 Entra users share the email jane.doe@contoso.example"
    plan = _plan([JANE, john], [])
    assert plan[["action", "entra_key", "reason"]].to_dict("records") == [
        {"action": "conflict", "entra_key": KEY, "reason": shared},
        {"action": "conflict", "entra_key": john["id"], "reason": shared},
    ]
    plan = _plan([JANE, john], [SYNCED])
    assert plan[["action", "zammad_id", "reason"]].to_dict("records") == [
        {"action": "conflict", "zammad_id": 10, "reason": shared},
        {
            "action": "conflict",
            "zammad_id": None,
            "reason": "email belongs to Zammad user #10, linked to another Entra object",
        },
    ]


def test_a_skipped_member_keeps_its_place_and_the_others_are_still_planned() -> None:
    guest = graph_user("guest.one", mail=None, userPrincipalName="g_x.example#EXT#@t.onmicrosoft.com")
    plan = _plan([guest, JANE, graph_user("john.roe")], [SYNCED])
    assert plan[["action", "entra_key", "reason"]].to_dict("records") == [
        {"action": "skip", "entra_key": guest["id"], "reason": NO_EMAIL_REASON},
        {"action": "noop", "entra_key": KEY, "reason": None},
        {"action": "create", "entra_key": graph_user("john.roe")["id"], "reason": "new member"},
    ]


@pytest.mark.parametrize(
    "member",
    [
        pytest.param(
            graph_user("jane.doe", mail=None, userPrincipalName="j_x.example#EXT#@t.onmicrosoft.com"), id="no-email"
        ),
        pytest.param({"@odata.type": "#microsoft.graph.user", "id": KEY}, id="no-properties"),
    ],
)
def test_a_member_the_normalizer_skips_keeps_their_zammad_user_untouched(member: dict) -> None:
    """A skip is not a leave: the member is still in the groups, so their Zammad user is not deactivated."""
    plan = _plan([member], [SYNCED])
    assert plan[["action", "entra_key", "zammad_id"]].to_dict("records") == [
        {"action": "skip", "entra_key": KEY, "zammad_id": 10}
    ]


# --- scope rules, leaving, the grace period and the opt-out (issue 12) ------------------------------
NO_GUESTS = (ScopeTest("userType", equals="Guest"),)
EMPLOYEES = (ScopeTest("employeeType", one_of=("Employee", "Intern")),)
PARTNERS = (ScopeTest("mail", matches=r".*@partner\.example"),)
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
WEEK = timedelta(days=7)
GUEST_OUT = "out of scope: scope.exclude[0] (userType equals 'Guest')"
NOT_EMPLOYEE = "out of scope: matches no scope.include rule (employeeType in ['Employee', 'Intern'])"
WALK_IN = zammad_user(10, "jane.doe@contoso.example")


def _scoped(users: list[dict], zammad: list[dict], include: tuple = (), exclude: tuple = (), **options: Any) -> list:
    plan = compute_plan(
        universal(*users, include=include, exclude=exclude), zammad_frame(*zammad), plan_options(**options)
    )
    return [
        (row["action"], None if pd.isna(row["zammad_id"]) else int(row["zammad_id"]), row["reason"])
        for row in plan.to_dict("records")
    ]


@pytest.mark.parametrize(
    ("member", "zammad", "rules_", "expected"),
    [
        pytest.param(
            {"userType": "Guest"},
            [SYNCED],
            {"exclude": NO_GUESTS},
            [("deactivate", 10, GUEST_OUT)],
            id="excluded-managed-user-deactivated",
        ),
        pytest.param(
            {"userType": "guest"},
            [SYNCED],
            {"exclude": NO_GUESTS},
            [("deactivate", 10, GUEST_OUT)],
            id="rule-ignores-case",
        ),
        pytest.param(
            {"userType": "Guest"}, [], {"exclude": NO_GUESTS}, [("skip", None, GUEST_OUT)], id="excluded-never-created"
        ),
        pytest.param(
            {"userType": "Guest"},
            [WALK_IN],
            {"exclude": NO_GUESTS},
            [("skip", None, GUEST_OUT)],
            id="excluded-never-adopted",
        ),
        pytest.param(
            {"userType": "Guest"},
            [{**SYNCED, "active": False}],
            {"exclude": NO_GUESTS},
            [("skip", 10, GUEST_OUT)],
            id="excluded-inactive-not-reactivated",
        ),
        pytest.param(
            {"userType": "Guest"},
            [{**SYNCED, "entrasync_profile": "other"}],
            {"exclude": NO_GUESTS},
            [("skip", 10, GUEST_OUT)],
            id="excluded-other-profiles-user-untouched",
        ),
        pytest.param({"userType": "Member"}, [SYNCED], {"exclude": NO_GUESTS}, [("noop", 10, None)], id="not-excluded"),
        pytest.param(
            {"employeeType": "Contractor"},
            [SYNCED],
            {"include": EMPLOYEES},
            [("deactivate", 10, NOT_EMPLOYEE)],
            id="not-included-deactivated",
        ),
        pytest.param(
            {"employeeType": None},
            [],
            {"include": EMPLOYEES},
            [("skip", None, NOT_EMPLOYEE)],
            id="missing-attribute-not-included",
        ),
        pytest.param(
            {"employeeType": "intern"},
            [SYNCED],
            {"include": EMPLOYEES},
            [("noop", 10, None)],
            id="included-by-any-value",
        ),
        pytest.param(
            {"employeeType": "Employee", "userType": "Guest"},
            [SYNCED],
            {"include": EMPLOYEES, "exclude": NO_GUESTS},
            [("deactivate", 10, GUEST_OUT)],
            id="exclude-wins-over-include",
        ),
        pytest.param(
            {"mail": "jane@partner.example"},
            [],
            {"exclude": PARTNERS},
            [("skip", None, "out of scope: scope.exclude[0] (mail matches '.*@partner\\\\.example')")],
            id="matches-the-whole-value",
        ),
        pytest.param(
            {"mail": "jane@partner.example.org"},
            [],
            {"exclude": PARTNERS},
            [("create", None, "new member")],
            id="matches-no-prefix",
        ),
        pytest.param(
            {"userType": "Guest", "accountEnabled": False},
            [SYNCED],
            {"exclude": NO_GUESTS},
            [("deactivate", 10, "account disabled in Entra (accountEnabled false)")],
            id="disabled-and-excluded-deactivated-at-once",
        ),
    ],
)
def test_scope_rules(member: dict, zammad: list[dict], rules_: dict, expected: list) -> None:
    """A member out of scope is a leaver: deactivated when we manage them, never created or adopted."""
    assert _scoped([graph_user("jane.doe", **member)], zammad, **rules_) == expected


LEAVER = zammad_user(20, "left@contoso.example", "left-key")


@pytest.mark.parametrize(
    ("zammad", "options", "expected"),
    [
        pytest.param(
            LEAVER, {}, ("deactivate", 20, "no longer a member of the configured groups"), id="deactivate-at-once"
        ),
        pytest.param(
            LEAVER,
            {"on_leave": "ignore"},
            ("skip", 20, "no longer a member of the configured groups; left as it is (on_leave: ignore)"),
            id="on-leave-ignore",
        ),
        pytest.param(
            LEAVER,
            {"grace": WEEK, "now": NOW},
            (
                "grace",
                20,
                "no longer a member of the configured groups; in the grace period since 2026-12-02 09:00 UTC, deactivated from 2026-12-09 09:00 UTC",
            ),
            id="first-missing-now",
        ),
        pytest.param(
            LEAVER,
            {"grace": WEEK, "now": NOW, "missing_since": {"left-key": NOW - timedelta(days=6, hours=23)}},
            (
                "grace",
                20,
                "no longer a member of the configured groups; in the grace period since 2026-11-25 10:00 UTC, deactivated from 2026-12-02 10:00 UTC",
            ),
            id="still-in-grace",
        ),
        pytest.param(
            LEAVER,
            {"grace": WEEK, "now": NOW, "missing_since": {"left-key": NOW - WEEK}},
            (
                "deactivate",
                20,
                "no longer a member of the configured groups; missing since 2026-11-25 09:00 UTC, grace period over",
            ),
            id="grace-over-to-the-minute",
        ),
        pytest.param(
            LEAVER,
            {"grace": WEEK, "now": NOW, "missing_since": {"other-key": NOW - WEEK}},
            (
                "grace",
                20,
                "no longer a member of the configured groups; in the grace period since 2026-12-02 09:00 UTC, deactivated from 2026-12-09 09:00 UTC",
            ),
            id="someone-elses-time",
        ),
        pytest.param(
            {**LEAVER, "role_ids": (1,)},
            {"grace": WEEK, "now": NOW},
            ("skip", 20, "protected account (holds the Admin role); no longer a member of the configured groups"),
            id="protected",
        ),
        pytest.param(
            {**LEAVER, "entrasync_ignore": True},
            {},
            (
                "opted_out",
                20,
                "opted out in Zammad (entrasync_ignore is set): never written; no longer a member of the configured groups",
            ),
            id="opted-out",
        ),
        pytest.param(
            {**LEAVER, "entrasync_ignore": True},
            {"on_leave": "ignore"},
            (
                "opted_out",
                20,
                "opted out in Zammad (entrasync_ignore is set): never written; no longer a member of the configured groups",
            ),
            id="opted-out-before-ignore",
        ),
        pytest.param(
            {**LEAVER, "entrasync_ignore": False},
            {},
            ("deactivate", 20, "no longer a member of the configured groups"),
            id="opt-out-unset",
        ),
    ],
)
def test_a_leaver(zammad: dict, options: dict, expected: tuple) -> None:
    assert _scoped([], [zammad], **options) == [expected]


def test_a_member_out_of_scope_gets_the_grace_period_too() -> None:
    decided = _scoped([graph_user("jane.doe", userType="Guest")], [SYNCED], exclude=NO_GUESTS, grace=WEEK, now=NOW)
    assert decided == [
        (
            "grace",
            10,
            f"{GUEST_OUT}; in the grace period since 2026-12-02 09:00 UTC, deactivated from 2026-12-09 09:00 UTC",
        )
    ]


def test_a_member_disabled_in_entra_is_deactivated_without_waiting_for_the_grace_period() -> None:
    decided = _scoped([graph_user("jane.doe", accountEnabled=False)], [SYNCED], grace=WEEK, now=NOW)
    assert decided == [("deactivate", 10, "account disabled in Entra (accountEnabled false)")]


def test_a_member_back_within_the_grace_period_is_untouched_and_leaves_the_ledger() -> None:
    options = plan_options(grace=WEEK, now=NOW, missing_since={KEY: NOW - timedelta(days=2), "left-key": NOW - WEEK})
    plan = compute_plan(
        universal(JANE), zammad_frame(SYNCED, LEAVER, {**LEAVER, "id": 21, "entra_key": "new-key"}), options
    )
    assert list(plan["action"]) == ["noop", "deactivate", "grace"]
    assert rules.missing_ledger(plan, options) == {"left-key": NOW - WEEK, "new-key": NOW}


def test_the_ledger_is_empty_without_a_clock_or_a_plan() -> None:
    plan = compute_plan(universal(), zammad_frame(LEAVER), plan_options())
    assert list(plan["action"]) == ["deactivate"]
    assert rules.missing_ledger(plan, plan_options()) == {}
    assert rules.missing_ledger(plan.iloc[0:0], plan_options(now=NOW)) == {}


@pytest.mark.parametrize(
    ("zammad", "expected"),
    [
        pytest.param({**SYNCED, "department": "Old", "entrasync_ignore": True}, ("opted_out", 10), id="changed"),
        pytest.param({**SYNCED, "entrasync_ignore": True}, ("opted_out", 10), id="unchanged"),
        pytest.param({**SYNCED, "active": False, "entrasync_ignore": True}, ("opted_out", 10), id="inactive"),
        pytest.param({**WALK_IN, "entrasync_ignore": True}, ("opted_out", 10), id="walk-in-not-adopted"),
        pytest.param({**SYNCED, "role_ids": (1,), "entrasync_ignore": True}, ("opted_out", 10), id="admin-too"),
        pytest.param({**SYNCED, "department": "Old", "entrasync_ignore": False}, ("update", 10), id="unset"),
        pytest.param({**SYNCED, "department": "Old", "entrasync_ignore": None}, ("update", 10), id="empty"),
    ],
)
def test_an_opted_out_zammad_user_is_never_written(zammad: dict, expected: tuple) -> None:
    action, zammad_id, reason = _scoped([JANE], [zammad])[0]
    assert (action, zammad_id) == expected
    assert (reason == rules.OPTED_OUT_REASON) is (action == "opted_out")


def test_the_new_decisions_are_counted_and_reviewed_with_their_reasons() -> None:
    options = plan_options(grace=WEEK, now=NOW)
    plan = compute_plan(universal(JANE), zammad_frame({**SYNCED, "entrasync_ignore": True}, LEAVER), options)
    counts = rules.action_counts(plan)
    assert (counts["opted_out"], counts["grace"]) == (1, 1)
    assert [(c["action"], c["zammad_id"]) for c in rules.plan_changes(plan)] == [("grace", 20), ("opted_out", 10)]
    assert rules.COUNT_NAMES[Action.GRACE] == "in_grace" and rules.COUNT_NAMES[Action.OPTED_OUT] == "opted_out"
    assert set(rules.HELD_ACTIONS) == {Action.SKIP, Action.CONFLICT, Action.GRACE, Action.OPTED_OUT}


def test_a_whole_number_zammad_holds_as_a_float_is_no_change() -> None:
    """A numeric column with a gap becomes float64: 4711.0 is the 4711 Entra gives, not a change."""
    from entrasync_pipeline.normalize import Rule

    mapping = {**normalize_options().mapping, "employee_no": Rule(("employeeId",))}
    members = members_frame(JANE, graph_user("john.roe"))
    members["employeeId"] = [4711, None]  # float64: 4711.0 and NaN
    users = normalize_members(members, normalize_options(mapping=mapping))
    assert users["employee_no"].tolist() == ["4711", None]
    options = plan_options(fields=(*plan_options().fields, "employee_no"))
    zammad = zammad_frame(
        {**SYNCED, "employee_no": 4711.0}, zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"])
    )
    assert list(compute_plan(users, zammad, options)["action"]) == ["noop", "noop"]


# --- re-hires and relinks, adoption by login (issue 12 §5) -------------------------------------------
REHIRED = zammad_user(10, "jane.doe@contoso.example", "old-key")
RELINKED = "relinked: Entra object old-key was deleted; its email now belongs to this one"
FOREIGN = "email belongs to Zammad user #10, linked to another Entra object"


@pytest.mark.parametrize(
    ("member", "zammad", "options", "expected"),
    [
        pytest.param({}, REHIRED, {"deleted_keys": frozenset({"old-key"})}, ("relink", RELINKED), id="relinked"),
        pytest.param(
            {},
            {**REHIRED, "active": False},
            {"deleted_keys": frozenset({"old-key"})},
            ("relink", RELINKED),
            id="relinked-and-reactivated",
        ),
        pytest.param({}, REHIRED, {}, ("conflict", FOREIGN), id="old-object-still-exists"),
        pytest.param(
            {},
            REHIRED,
            {"deleted_keys": frozenset({"old-key"}), "relink_deleted": False},
            ("conflict", FOREIGN),
            id="relink-off",
        ),
        pytest.param(
            {},
            {**REHIRED, "entrasync_profile": "other"},
            {"deleted_keys": frozenset({"old-key"})},
            ("conflict", FOREIGN),
            id="other-profiles-user",
        ),
        pytest.param(
            {"accountEnabled": False},
            REHIRED,
            {"deleted_keys": frozenset({"old-key"})},
            ("conflict", FOREIGN),
            id="new-object-disabled",
        ),
        pytest.param(
            {},
            {**REHIRED, "entrasync_ignore": True},
            {"deleted_keys": frozenset({"old-key"})},
            ("opted_out", rules.OPTED_OUT_REASON),
            id="opted-out",
        ),
        pytest.param(
            {},
            {**REHIRED, "role_ids": (1,)},
            {"deleted_keys": frozenset({"old-key"})},
            ("skip", "protected account (holds the Admin role)"),
            id="protected",
        ),
    ],
)
def test_a_rehire_is_relinked_when_graph_confirms_the_old_object_is_gone(
    member: dict, zammad: dict, options: dict, expected: tuple
) -> None:
    plan = _plan([graph_user("jane.doe", **member)], [zammad], **options)
    assert len(plan) == 1, plan  # the old Zammad user is never a leaver too
    row = plan.iloc[0].to_dict()
    assert (row["action"], row["reason"]) == expected
    if row["action"] == "relink":
        assert row["changes"]["entra_key"] == ["old-key", KEY] and row["payload"]["entra_key"] == KEY
        assert ("active" in row["changes"]) is (not zammad["active"]) and row["zammad_id"] == 10


def test_the_relink_candidates_are_the_linked_users_whose_email_a_new_member_has() -> None:
    others = [
        zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"]),  # a member: not asked about
        zammad_user(12, "max.muster@contoso.example", "max-key", profile="other"),  # another profile's
        zammad_user(13, "eve.adams@contoso.example", "eve-key"),  # no member has this email
    ]
    users = universal(JANE, graph_user("john.roe"))
    zammad = zammad_frame(REHIRED, *others)
    assert rules.relink_candidates(users, zammad, plan_options()) == {"old-key"}
    assert rules.relink_candidates(users, zammad, plan_options(relink_deleted=False)) == set()
    assert rules.relink_candidates(universal(), zammad, plan_options()) == set()
    guest = universal(JANE, exclude=NO_GUESTS)  # not a guest: still a candidate
    assert rules.relink_candidates(guest, zammad, plan_options()) == {"old-key"}
    out = universal(graph_user("jane.doe", userType="Guest"), exclude=NO_GUESTS)
    assert rules.relink_candidates(out, zammad, plan_options()) == set()


LOGIN_ONLY = {**zammad_user(10, "jane.doe@contoso.example"), "login": "Jane.Doe@Contoso.Example", "email": ""}


@pytest.mark.parametrize(
    ("zammad", "options", "expected"),
    [
        pytest.param([LOGIN_ONLY], {}, ("update", "adopted by login (Zammad had no email)"), id="adopted"),
        pytest.param(
            [{**LOGIN_ONLY, "email": None}], {}, ("update", "adopted by login (Zammad had no email)"), id="email-null"
        ),
        pytest.param(
            [LOGIN_ONLY],
            {"adopt_by_email": False},
            ("conflict", "Zammad user #10 has this email and adoption by email is off"),
            id="adoption-off",
        ),
        pytest.param(
            [LOGIN_ONLY, {**LOGIN_ONLY, "id": 11}],
            {},
            ("conflict", "several Zammad users have this email (#10, #11)"),
            id="two-logins",
        ),
        pytest.param(
            [{**LOGIN_ONLY, "entra_key": "other", "entrasync_profile": PROFILE}],
            {},
            ("create", "new member"),
            id="keyed-not-adopted",
        ),
        pytest.param(
            [{**LOGIN_ONLY, "email": "someone@else.example"}],
            {},
            ("create", "new member"),
            id="login-with-another-email",
        ),
    ],
)
def test_a_zammad_user_without_email_is_adopted_by_its_login(zammad: list, options: dict, expected: tuple) -> None:
    plan = _plan([JANE], zammad, **options)
    member = plan.iloc[0].to_dict()
    assert (member["action"], member["reason"]) == expected
    if member["action"] == "update":
        assert member["changes"]["email"][1] == "jane.doe@contoso.example" and member["payload"]["entra_key"] == KEY


# --- hand edits in Zammad (issue 12 §4) -------------------------------------------------------------
WROTE = {10: {"department": "IT", "phone": "+1 555 0100", "email": "jane.doe@contoso.example", "active": True}}
EDITED = {**SYNCED, "department": "Field Ops"}
DRIFT = rules.DRIFT_NOTE


@pytest.mark.parametrize(
    ("member", "zammad", "options", "expected"),
    [
        pytest.param(
            {},
            EDITED,
            {},
            (
                "update",
                {"department": ["Field Ops", "IT"]},
                f"attributes changed; {DRIFT}: department overwritten (drift: entra)",
            ),
            id="overwritten-by-default",
        ),
        pytest.param(
            {},
            EDITED,
            {"drift_fields": {"department": "zammad"}},
            ("skip", {}, f"{DRIFT}: department kept (drift: zammad)"),
            id="kept-per-field",
        ),
        pytest.param(
            {"department": "Sales"},
            EDITED,
            {"drift_default": "zammad"},
            ("skip", {}, f"{DRIFT}: department kept (drift: zammad)"),
            id="kept-when-entra-changed-too",
        ),
        pytest.param(
            {"mobilePhone": "+1 555 0199"},
            EDITED,
            {"drift_default": "zammad"},
            (
                "update",
                {"mobile": ["", "+1 555 0199"]},
                f"attributes changed; {DRIFT}: department kept (drift: zammad)",
            ),
            id="kept-beside-another-change",
        ),
        pytest.param(
            {},
            {**EDITED, "phone": "+1 555 0111"},
            {"drift_fields": {"phone": "zammad"}},
            (
                "update",
                {"department": ["Field Ops", "IT"]},
                f"attributes changed; {DRIFT}: phone kept (drift: zammad), department overwritten (drift: entra)",
            ),
            id="one-kept-one-overwritten",
        ),
        pytest.param(
            {"department": "Sales"},
            SYNCED,
            {"drift_default": "zammad"},
            ("update", {"department": ["IT", "Sales"]}, "attributes changed"),
            id="entra-changed-zammad-untouched",
        ),
        pytest.param(
            {},
            EDITED,
            {"last_written": {10: {"phone": "+1 555 0100"}}},
            ("update", {"department": ["Field Ops", "IT"]}, "attributes changed"),
            id="field-never-written",
        ),
        pytest.param(
            {},
            EDITED,
            {"last_written": {11: WROTE[10]}},
            ("update", {"department": ["Field Ops", "IT"]}, "attributes changed"),
            id="someone-elses-record",
        ),
        pytest.param(
            {},
            {**EDITED, "entra_key": None, "entrasync_profile": None, "entra_object_type": None},
            {"drift_default": "zammad"},
            ("update", None, "adopted by email"),
            id="adoption-not-judged",
        ),
        pytest.param(
            {"mail": "Jane.Doe@contoso.example"},
            {**SYNCED, "email": "JANE.DOE@contoso.example"},
            {"drift_default": "zammad"},
            ("noop", {}, None),
            id="email-case-is-no-edit",
        ),
    ],
)
def test_hand_edits_in_zammad(member: dict, zammad: dict, options: dict, expected: tuple) -> None:
    row = _plan([graph_user("jane.doe", **member)], [zammad], **{"last_written": WROTE, **options}).iloc[0].to_dict()
    action, changes, reason = expected
    assert (row["action"], row["reason"]) == (action, reason)
    if changes is not None:
        assert {k: v for k, v in row["changes"].items() if k not in rules.IDENTITY_FIELDS} == changes
        assert row["payload"] == {k: v[1] for k, v in row["changes"].items()}


@pytest.mark.parametrize(
    ("written", "options", "expected"),
    [
        pytest.param(
            {"active": True},
            {},
            ("skip", f"{DRIFT}: deactivated; kept inactive (drift.manual_deactivation: keep)"),
            id="kept-by-default",
        ),
        pytest.param(
            {"active": True},
            {"manual_deactivation": "reactivate"},
            ("reactivate", f"member again; {DRIFT}: deactivated; reactivated (drift.manual_deactivation: reactivate)"),
            id="reactivated",
        ),
        pytest.param({"active": False}, {}, ("reactivate", "member again"), id="entrasync-deactivated-it"),
        pytest.param({}, {}, ("reactivate", "member again"), id="never-written"),
    ],
)
def test_a_member_deactivated_by_hand(written: dict, options: dict, expected: tuple) -> None:
    inactive = {**SYNCED, "active": False}
    row = _plan([JANE], [inactive], last_written={10: written}, **options).iloc[0].to_dict()
    assert (row["action"], row["reason"]) == expected
    assert ("active" in row["payload"]) is (row["action"] == "reactivate")


def test_the_hand_edit_candidates_and_the_drift_count() -> None:
    zammad = [EDITED, zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"], active=False)]
    first = _plan([JANE, graph_user("john.roe")], zammad)
    assert list(first["action"]) == ["update", "reactivate"] and rules.hand_edit_candidates(first) == [10, 11]
    assert rules.drift_count(first) == 0 and rules.hand_edit_candidates(first.iloc[0:0]) == []
    second = _plan([JANE, graph_user("john.roe")], zammad, last_written={**WROTE, 11: {"active": True}})
    assert list(second["action"]) == ["update", "skip"] and rules.drift_count(second) == 2
    assert "drift" in rules.COUNT_COLUMNS


def test_a_reactivation_writes_active_and_the_differing_fields() -> None:
    row = _only(_plan([graph_user("jane.doe", department="Sales")], [{**SYNCED, "active": False}]), Action.REACTIVATE)
    assert row["changes"] == {"department": ["IT", "Sales"], "active": [False, True]}
    assert row["payload"] == {"department": "Sales", "active": True} and row["reason"] == "member again"
    assert row["zammad_id"] == 10


def test_an_update_reason_says_whether_the_user_was_adopted() -> None:
    row = _only(_plan([graph_user("jane.doe", department="Sales")], [SYNCED]), Action.UPDATE)
    assert row["reason"] == "attributes changed"


def test_a_field_zammad_holds_no_value_for_changes_from_none() -> None:
    zammad = zammad_frame({**SYNCED, "mobile": None}, zammad_user(11, "x@contoso.example"))
    zammad.loc[zammad["id"] == 10, "mobile"] = float("nan")
    row = _only(
        compute_plan(universal(graph_user("jane.doe", mobilePhone="+1 555 0199")), zammad, plan_options()),
        Action.UPDATE,
    )
    assert row["changes"] == {"mobile": [None, "+1 555 0199"]} and row["payload"] == {"mobile": "+1 555 0199"}


def test_a_zammad_attribute_stored_as_a_number_is_compared_as_text() -> None:
    """A custom attribute Zammad keeps as a number (an employee number) is no change when its text is equal."""
    from entrasync_pipeline.normalize import Rule

    mapping = {**normalize_options().mapping, "employee_no": Rule(("employeeId",))}
    users = normalize_members(members_frame(JANE), normalize_options(mapping=mapping))
    users["employee_no"] = ["4711"]
    options = plan_options(fields=(*plan_options().fields, "employee_no"))
    zammad = zammad_frame(SYNCED, zammad_user(11, "x@contoso.example"))
    zammad["employee_no"] = pd.Series([None, None, 4711, 12], dtype=object)
    assert _actions(compute_plan(users, zammad, options)) == ["noop"]
    zammad.loc[zammad["id"] == 10, "employee_no"] = 4712
    row = _only(compute_plan(users, zammad, options), Action.UPDATE)
    assert row["changes"] == {"employee_no": [4712, "4711"]}


def test_an_email_change_compares_the_way_zammad_stores_it() -> None:
    """Zammad strips and lower-cases email: a differently cased address is no change."""
    assert _actions(_plan([JANE], [{**SYNCED, "email": " Jane.Doe@CONTOSO.example "}])) == ["noop"]
    assert _actions(
        _plan([graph_user("jane.doe", department="Sales")], [{**SYNCED, "email": "Jane.Doe@CONTOSO.example"}])
    ) == ["update"]


# --- what a run reports: counts, writes, the reviewed changes ----------------------------------------
def _mixed_plan() -> pd.DataFrame:
    """One row of each kind but conflict and reactivate, two updates, two deactivations."""
    users = [
        JANE,  # noop
        graph_user("john.roe", department="Sales"),  # update
        graph_user("max.moe", department="Ops"),  # update
        graph_user("new.one"),  # create
        graph_user("ann.lee", mail=None, userPrincipalName="a_x.example#EXT#@t.onmicrosoft.com"),  # skip
    ]
    zammad = [
        SYNCED,
        zammad_user(11, "john.roe@contoso.example", graph_user("john.roe")["id"]),
        zammad_user(12, "max.moe@contoso.example", graph_user("max.moe")["id"]),
        zammad_user(13, "gone.one@contoso.example", "k13"),
        zammad_user(14, "gone.two@contoso.example", "k14"),
    ]
    return _plan(users, zammad)


def test_action_counts_name_every_action_even_when_none_is_planned() -> None:
    assert rules.action_counts(_mixed_plan()) == {
        "create": 1,
        "update": 2,
        "reactivate": 0,
        "deactivate": 2,
        "noop": 1,
        "skip": 1,
        "conflict": 0,
        "relink": 0,
        "grace": 0,
        "opted_out": 0,
    }
    assert rules.action_counts(pd.DataFrame(columns=PLAN_COLUMNS)) == dict.fromkeys([a.value for a in Action], 0)
    assert rules.action_counts(pd.DataFrame()) == dict.fromkeys([a.value for a in Action], 0)


def test_the_writes_of_a_plan_are_its_creates_updates_reactivations_and_deactivations() -> None:
    plan = _plan(
        [JANE, graph_user("new.one")], [{**SYNCED, "active": False}, zammad_user(13, "g@contoso.example", "k")]
    )
    plan = pd.concat([plan, _mixed_plan()], ignore_index=True)
    writes = rules.writes_of(plan)
    assert Counter(writes["action"]) == {"create": 2, "update": 2, "reactivate": 1, "deactivate": 3}
    assert writes.index.tolist() == [i for i, a in enumerate(plan["action"]) if a not in ("noop", "skip", "conflict")]
    empty = pd.DataFrame(columns=PLAN_COLUMNS)
    assert rules.writes_of(empty) is empty


def test_the_reviewed_changes_put_deactivations_first_and_leave_out_noop() -> None:
    changes = rules.plan_changes(_mixed_plan())
    assert [(c["action"], c["zammad_id"]) for c in changes] == [
        ("deactivate", 13),
        ("deactivate", 14),
        ("create", None),
        ("update", 11),
        ("update", 12),
        ("skip", None),
    ]
    assert changes[0] == {
        "action": "deactivate",
        "entra_key": "k13",
        "zammad_id": 13,
        "email": "gone.one@contoso.example",
        "fields": {"active": {"before": True, "after": False}},
        "reason": "no longer a member of the configured groups",
    }
    assert changes[3]["fields"] == {"department": {"before": "IT", "after": "Sales"}}
    assert changes[2]["fields"]["email"] == {"before": None, "after": "new.one@contoso.example"}
    assert changes[5]["email"] is None and changes[5]["fields"] == {} and changes[5]["reason"] == NO_EMAIL_REASON
    assert rules.plan_changes(pd.DataFrame(columns=PLAN_COLUMNS)) == []


def test_a_preview_caps_the_reviewed_changes_per_action() -> None:
    changes = rules.plan_changes(_mixed_plan(), limit=1)
    assert [(c["action"], c["zammad_id"]) for c in changes] == [
        ("deactivate", 13),
        ("create", None),
        ("update", 11),
        ("skip", None),
    ]
    assert [c["action"] for c in rules.plan_changes(_mixed_plan(), limit=0)] == []


def test_the_role_merge_count_counts_the_decisions_that_merged_conflicting_role_mappings() -> None:
    reasons = ["new member; " + rules.ROLE_MERGE_NOTE, None, rules.ROLE_MERGE_NOTE, "attributes changed", float("nan")]
    plan = pd.DataFrame({"action": ["create", "noop", "noop", "update", "skip"], "reason": reasons})
    assert rules.role_merge_count(plan) == 2
    assert rules.role_merge_count(pd.DataFrame(columns=PLAN_COLUMNS)) == 0
    assert rules.role_merge_count(pd.DataFrame()) == 0


def test_the_reviewed_changes_are_plain_json_values() -> None:
    """Role lists may arrive as tuples and missing values as NaN; a review shows lists and nulls."""
    plan = pd.DataFrame(
        [
            {
                "action": "update",
                "entra_key": "",
                "zammad_id": float("nan"),
                "email": "",
                "upn": None,
                "changes": {"role_ids": [(3,), (2, 3)], "mobile": [float("nan"), "1"]},
                "payload": {},
                "reason": "",
            }
        ]
    )
    assert rules.plan_changes(plan) == [
        {
            "action": "update",
            "entra_key": None,
            "zammad_id": None,
            "email": None,
            "fields": {"role_ids": {"before": [3], "after": [2, 3]}, "mobile": {"before": None, "after": "1"}},
            "reason": None,
        }
    ]


# --- properties ----------------------------------------------------------------------------------
_names = st.sampled_from(["ann.lee", "bo.kim", "cy.ng", "di.oh", "ed.yu", "fay.li", "gus.wu", "hal.xu"])
_people = st.lists(
    st.tuples(
        _names, st.booleans(), st.sampled_from(["IT", "Sales", None, "Ops"]), st.sampled_from([None, "x", "Mixed Case"])
    ),
    max_size=8,
    unique_by=lambda t: t[0],
)


def _apply(plan: pd.DataFrame, zammad: pd.DataFrame) -> pd.DataFrame:
    """A model of Zammad applying the plan (what a perfect apply would leave)."""
    users = {int(z["id"]): dict(z) for z in zammad.to_dict("records")}
    next_id = max(users) + 1
    for row in plan.to_dict("records"):
        if row["action"] == "create":
            users[next_id] = {
                "id": next_id,
                "login": row["payload"]["email"],
                "active": True,
                "role_ids": (3,),
                "mobile": "",
                "phone": "",
                "department": "",
                **row["payload"],
            }
            next_id += 1
        elif row["action"] in ("update", "reactivate", "relink", "deactivate"):
            users[int(row["zammad_id"])].update(row["payload"])
    return pd.DataFrame(list(users.values()))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_people, st.lists(st.tuples(_names, st.booleans(), st.booleans()), max_size=6, unique_by=lambda t: t[0]))
def test_planning_again_on_the_applied_state_yields_only_noop(people: list, existing: list) -> None:
    users = [
        graph_user(n, accountEnabled=enabled, department=dept, givenName=given or n.split(".")[0])
        for n, enabled, dept, given in people
    ]
    zammad = [
        zammad_user(100 + i, f"{n}@contoso.example", graph_user(n)["id"] if keyed else None, active=active)
        for i, (n, keyed, active) in enumerate(existing)
    ]
    universal_users = universal(*users)
    first = compute_plan(universal_users, zammad_frame(*zammad), plan_options())
    applied = _apply(first, zammad_frame(*zammad))
    second = compute_plan(universal_users, applied, plan_options())
    assert set(second["action"]) <= {"noop", "skip", "conflict", "grace", "opted_out"}, second[
        second["action"].isin(["create", "update", "reactivate", "deactivate"])
    ].to_dict("records")


@settings(max_examples=250, deadline=None)
@given(
    st.lists(
        st.tuples(_names, st.booleans(), st.sampled_from([PROFILE, "other", None])),
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_only_this_profiles_managed_users_are_ever_deactivated(existing: list) -> None:
    zammad = [
        zammad_user(100 + i, f"{n}@contoso.example", graph_user(n)["id"] if keyed else None, profile=owner)
        for i, (n, keyed, owner) in enumerate(existing)
    ]
    plan = compute_plan(universal(), zammad_frame(*zammad), plan_options())
    deactivated = set(plan.loc[plan["action"] == "deactivate", "zammad_id"].astype(int))
    expected = {100 + i for i, (_, keyed, owner) in enumerate(existing) if keyed and owner == PROFILE}
    assert deactivated == expected


def test_conflicting_group_role_mappings_are_merged_and_reported() -> None:
    from entrasync_pipeline.plan import ROLE_MERGE_NOTE

    users = universal(JANE, group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Agent",)})
    users.at[0, "source_groups"] = ("9a0f1b7c-0000-4000-8000-000000000001", "g2")
    users.at[0, "roles"] = ("Agent", "Customer")
    options = plan_options(
        role_ids={"Admin": 1, "Agent": 2, "Customer": 3},
        group_roles={"9a0f1b7c-0000-4000-8000-000000000001": ("Agent",), "g2": ("Customer",)},
    )
    row = _only(compute_plan(users, zammad_frame(), options), Action.CREATE)
    assert row["payload"]["role_ids"] == [2, 3] and ROLE_MERGE_NOTE in row["reason"]


# --- the fast noop path against the per-user rules -------------------------------------------------
_PEOPLE = ("ann.lee", "bo.kim", "cy.ng", "di.oh", "ed.yu", "fay.li")
_ROLE_IDS = {"Admin": 1, "Agent": 2, "Customer": 3}
_ANY_CASE = st.sampled_from([str.lower, str.lower, str.upper, str.title])
_PROTECTIONS = ("protected-by-id", "protected-by-login", "protected-by-email")
_SOMETIMES_PROTECTED = st.sampled_from([()] * 6 + [(p,) for p in _PROTECTIONS])
_NO_GUESTS = (ScopeTest("userType", equals="Guest"),)
_NOW = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)


def _mail(name: str) -> str:
    return f"{name}@contoso.example"


def _zammad_user(name: str, kind: str, email: str, **overrides: Any) -> dict:
    """kind: synced (this person's entra_key), walk-in (no entra_key), foreign (another Entra object's),
    other-profile (this person's entra_key, managed by another profile), login-only (no entra_key and
    no email, the address as its login)."""
    key = graph_user(name)["id"]
    given, _, surname = name.partition(".")
    entra_key = None if kind in ("walk-in", "login-only") else f"other-{key}" if kind == "foreign" else key
    if kind == "login-only":
        overrides = {"login": email, **overrides}
        email = ""
    return zammad_user(
        0,
        email,
        entra_key,
        profile="other" if kind == "other-profile" else PROFILE,
        firstname=given.title(),
        lastname=surname.title(),
        **overrides,
    )


_FIELD_CHANGES = {
    "department-changed": {"department": "Sales"},
    "phone-removed": {"businessPhones": []},
    "mobile-added": {"mobilePhone": "+1 555 0199"},
    "firstname-changed": {"givenName": "Anna"},
    "lastname-changed": {"surname": "Leigh"},
}
_TWISTS = (
    "opted-out",
    "guest",
    "zammad-inactive",
    "disabled-in-entra",
    "half-written-identity",
    "other-profile",
    "no-email",
    "skipped-with-an-email",
    "renamed-in-entra",
    "renamed-in-zammad",
    "admin",
    "walk-in-twin",
    "key-twin",
    "foreign-twin",
    *_PROTECTIONS,
    *_FIELD_CHANGES,
)


@st.composite
def _in_sync(draw: st.DrawFn, name: str) -> tuple[dict, list[dict]]:
    """A person whose synced Zammad user holds every value (the fast path's case), mostly with one
    twist that may take them off it: every condition of the fast path is one twist away (or a shared
    email, drawn for the whole pool)."""
    twists = {draw(st.sampled_from(("none",) * 10 + _TWISTS)), draw(st.sampled_from(("none",) * 60 + _TWISTS))}
    email = draw(_ANY_CASE)(_mail(f"{name}.old" if "renamed-in-zammad" in twists else name))
    synced = _zammad_user(
        name,
        "other-profile" if "other-profile" in twists else "synced",
        email,
        active="zammad-inactive" not in twists,
        role_ids=(1, 2) if "admin" in twists else draw(st.sampled_from([(3,), (2,), (2, 3)])),
        login=draw(st.sampled_from([email, email.upper(), email.title()])),
        protected=tuple(twists & set(_PROTECTIONS)),
    )
    if "half-written-identity" in twists:
        synced["entra_object_type"] = None
    if "opted-out" in twists:
        synced[rules.OPT_OUT_ATTRIBUTE] = True
    twins = [
        _zammad_user(name, kind, draw(_ANY_CASE)(_mail(name)), protected=())
        for kind, twist in (("walk-in", "walk-in-twin"), ("synced", "key-twin"), ("foreign", "foreign-twin"))
        if twist in twists
    ]
    overrides: dict[str, Any] = {"mail": draw(_ANY_CASE)(_mail(name))}
    if "disabled-in-entra" in twists:
        overrides["accountEnabled"] = False
    if "guest" in twists:  # out of scope when the drawn options exclude guests
        overrides["userType"] = "Guest"
    if "renamed-in-entra" in twists:
        overrides["mail"] = _mail(f"{name}.new")
    if "no-email" in twists:
        overrides.update(mail=None, userPrincipalName=f"{name}_partner.example#EXT#@contoso.onmicrosoft.com")
    for twist in twists & set(_FIELD_CHANGES):
        overrides.update(_FIELD_CHANGES[twist])
    if "skipped-with-an-email" in twists:  # no normalizer rule does this yet; the plan must still skip
        overrides["skip_reason"] = "excluded by a rule"
    return graph_user(name, **overrides), [synced, *twins]


@st.composite
def _known_by_email(draw: st.DrawFn, name: str) -> tuple[dict, list[dict]]:
    """A person Zammad knows only by email (any case): walk-ins to adopt, or an address another Entra object holds."""
    holders = draw(
        st.sampled_from(
            [("walk-in",)] * 4
            + [("walk-in", "walk-in"), ("foreign",), ("walk-in", "foreign"), ("login-only",), ("login-only", "walk-in")]
        )
    )
    zammad = [
        _zammad_user(
            name,
            kind,
            draw(_ANY_CASE)(_mail(name)),
            active=draw(st.sampled_from([True, True, False])),
            department=draw(st.sampled_from(["IT", "Old"])),
            protected=draw(_SOMETIMES_PROTECTED),
        )
        for kind in holders
    ]
    person = graph_user(
        name, mail=draw(_ANY_CASE)(_mail(name)), accountEnabled=draw(st.sampled_from([True, True, False]))
    )
    return person, zammad


@st.composite
def _anything(draw: st.DrawFn, name: str) -> tuple[dict | None, list[dict]]:
    """Whatever may be: no Entra user (a leaver) or one with other values; 0–2 Zammad users of any kind."""
    person = None
    if draw(st.booleans()):
        mail = draw(
            st.sampled_from(
                [_mail(name), _mail(name).title(), _mail(draw(st.sampled_from(_PEOPLE))), _mail(f"{name}.new"), None]
            )
        )
        person = graph_user(
            name,
            accountEnabled=draw(st.booleans()),
            mail=mail,
            department=draw(st.sampled_from(["IT", "IT", "Sales"])),
            businessPhones=draw(st.sampled_from([["+1 555 0100"], ["+1 555 0100"], []])),
            userType=draw(st.sampled_from(["Member", "Member", "Guest"])),
            **({} if mail else {"userPrincipalName": f"{name}_partner.example#EXT#@x.onmicrosoft.com"}),
        )
    given, _, surname = name.partition(".")
    zammad = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(
            st.sampled_from(["synced", "synced", "synced", "walk-in", "foreign", "other-profile", "login-only"])
        )
        email = draw(_ANY_CASE)(_mail(draw(st.sampled_from([name, name, f"{name}.new", f"{name}.old"]))))
        user = _zammad_user(
            name,
            kind,
            email,
            department=draw(st.sampled_from(["IT", "IT", "Old"])),
            phone=draw(st.sampled_from(["+1 555 0100", "+1 555 0100", ""])),
            active=draw(st.booleans()),
            role_ids=draw(st.sampled_from([(3,), (3,), (2,), (1, 2)])),
            login=draw(st.sampled_from([email, email.upper(), f"{given}{surname}"])),
            protected=draw(_SOMETIMES_PROTECTED),
        )
        if kind != "walk-in" and draw(st.integers(0, 9)) == 0:
            user["entra_object_type"] = None  # a half-written identity
        user[rules.OPT_OUT_ATTRIBUTE] = draw(st.sampled_from([None, None, False, True]))
        zammad.append(user)
    return person, zammad


@st.composite
def _planning_inputs(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Universal users, Zammad users and options: every person of the pool in one of three situations."""
    situations = {"in-sync": _in_sync, "known-by-email": _known_by_email, "anything": _anything}
    people, zammad = [], []
    for name in _PEOPLE:
        person, theirs = draw(situations[draw(st.sampled_from(["in-sync"] * 4 + ["known-by-email", "anything"]))](name))
        people += [person] if person is not None else []
        zammad += theirs
    for position, user in enumerate(draw(st.permutations(zammad))):  # ids in any order of the people
        user["id"] = 100 + position
    # The configured lists are lower-cased by the settings; Zammad's login and email come in any case.
    protected: dict[str, set] = {how: set() for how in _PROTECTIONS}
    for user in zammad:
        for how in user.pop("protected"):
            protected[how].add(
                user["id"]
                if how == "protected-by-id"
                else user["login" if how == "protected-by-login" else "email"].lower()
            )
    group_roles = draw(st.sampled_from([{}, {}, {}, {GROUP: ("Customer",)}, {GROUP: ("Wizard",)}]))
    options = plan_options(
        adopt_by_email=draw(st.sampled_from([True, True, False])),
        protect_admins=draw(st.sampled_from([True, True, False])),
        protected_ids=frozenset(protected["protected-by-id"]),
        protected_logins=frozenset(protected["protected-by-login"]),
        protected_emails=frozenset(protected["protected-by-email"]),
        role_ids=draw(st.sampled_from([None, None, _ROLE_IDS])),
        group_roles=group_roles,
        on_leave=draw(st.sampled_from(["deactivate", "deactivate", "ignore"])),
        relink_deleted=draw(st.sampled_from([True, True, False])),
        drift_default=draw(st.sampled_from(["entra", "zammad"])),
        drift_fields=draw(st.sampled_from([{}, {"department": "zammad"}, {"phone": "entra", "department": "entra"}])),
        manual_deactivation=draw(st.sampled_from(["keep", "reactivate"])),
        last_written={  # what entrasync last wrote to some of them: hand edits since are judged
            user["id"]: {
                "department": draw(st.sampled_from(["IT", "Old", "Sales"])),
                "phone": draw(st.sampled_from(["+1 555 0100", ""])),
                "active": draw(st.booleans()),
            }
            for user in zammad
            if draw(st.booleans())
        },
        deleted_keys=frozenset(  # Graph's 404s: some of the objects the foreign users are linked to
            draw(st.sets(st.sampled_from([f"other-{graph_user(name)['id']}" for name in _PEOPLE]), max_size=4))
        ),
        grace=draw(st.sampled_from([timedelta(0), timedelta(0), timedelta(days=7)])),
        now=_NOW,
        missing_since={  # some leavers missing for a while already, some for longer than the grace period
            graph_user(name)["id"]: _NOW - timedelta(days=draw(st.sampled_from([1, 30])))
            for name in draw(st.lists(st.sampled_from(_PEOPLE), max_size=3))
        },
    )
    if draw(st.booleans()):  # two Entra users with one email: neither may be synced, nor be a fast noop
        owner, sharer = draw(st.permutations(_PEOPLE))[:2]
        for person in people:
            if person["id"] == graph_user(sharer)["id"]:
                person["mail"] = _mail(owner)
    skipped = {p["id"]: p.pop("skip_reason") for p in people if "skip_reason" in p}
    exclude = draw(st.sampled_from([(), (), _NO_GUESTS]))
    users = universal(*people, group_roles=group_roles, exclude=exclude)
    for key, reason in skipped.items():
        users.loc[users["entra_key"] == key, "skip_reason"] = reason
    return users, zammad_frame(*zammad), options


def _per_user_rules(users: pd.DataFrame, zammad: pd.DataFrame, options: Any) -> list[dict]:
    """The reference: every user through the per-user rules, against an index of every Zammad user.

    No column-wise noop pass, no pre-filtering of the Zammad users compute_plan does for speed:
    DESIGN.md §2's matching, then ``_decide`` per user, then the leavers: the active Zammad users
    with an entra_key, managed by this profile, that no decision placed.
    """
    zammad = zammad[zammad["id"].astype(int) != rules.SYSTEM_USER_ID]
    records = zammad.to_dict("records")
    entra = [{**user, "_pos": i} for i, user in enumerate(users.to_dict("records"))]
    emails = Counter(  # claimants: synced and enabled (a disabled account claims no address)
        u["email"]
        for u in entra
        if u["email"] and pd.isna(u["skip_reason"]) and pd.isna(u["scope_reason"]) and u["active"]
    )
    seen: set[int] = set()
    rows = rules._decide_all(entra, rules._index(records), emails, seen, options)
    left = [
        z
        for z in records
        if z["id"] not in seen and z["entra_key"] and z["entrasync_profile"] == options.profile and z["active"]
    ]
    return [{c: row[c] for c in PLAN_COLUMNS} for row in rows + rules._leavers(left, options)]


def _plain(row: dict) -> dict:
    return {
        k: None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else int(v) if k == "zammad_id" else v
        for k, v in row.items()
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_planning_inputs())
def test_the_fast_noop_path_decides_exactly_like_the_per_user_rules(inputs: tuple) -> None:
    """compute_plan recognises unchanged users column-wise (``_unchanged``); each of its rows must be
    what the per-user rules decide for that user: action, zammad_id, changes, payload, reason and
    the identity columns, in the same order, with the same leavers."""
    users, zammad, options = inputs
    note(f"universal users: {users.to_dict('records')}\nzammad users: {zammad.to_dict('records')}\n{options}")
    fast = len(rules._unchanged(users, zammad[zammad["id"] != rules.SYSTEM_USER_ID], options)[0])
    event("fast path: none" if not fast else "fast path: some users" if fast < len(users) else "fast path: all")
    plan = [_plain(row) for row in compute_plan(users, zammad, options).to_dict("records")]
    reference = [_plain(row) for row in _per_user_rules(users, zammad, options)]
    for got, want in zip(plan, reference):
        assert got == want
    assert len(plan) == len(reference)


def test_the_fast_noop_path_is_taken_for_an_unchanged_user() -> None:
    """Keeps the property above meaningful: the synced, unchanged user never reaches the per-user rules."""
    noop = rules._unchanged(universal(JANE), zammad_frame(SYNCED), plan_options())[0]
    assert noop[["action", "entra_key", "email"]].to_dict("records") == [
        {"action": "noop", "entra_key": KEY, "email": "jane.doe@contoso.example"}
    ]


def _zammad_by_id(zammad: pd.DataFrame) -> dict[int, dict]:
    return {int(z["id"]): z for z in zammad.to_dict("records") if int(z["id"]) != rules.SYSTEM_USER_ID}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_planning_inputs())
def test_every_member_gets_one_decision_naming_them_in_member_order_then_the_leavers(inputs: tuple) -> None:
    """Row i is member i's (entra_key, upn, email; the Zammad user it concerns has their key or email);
    the rows after the members are leavers: this profile's active keyed users, named as Zammad has them."""
    users, zammad, options = inputs
    plan = [_plain(row) for row in compute_plan(users, zammad, options).to_dict("records")]
    members, by_id = users.to_dict("records"), _zammad_by_id(zammad)
    for row, user in zip(plan, members):
        assert (row["entra_key"], row["upn"]) == (user["entra_key"], user["upn"])
        assert row["email"] == user["email"] or not user["email"]
        assert (row["zammad_id"] is None) is (row["action"] == "create") or row["action"] in ("skip", "conflict")
        if row["zammad_id"] is not None:
            theirs = by_id[row["zammad_id"]]
            assert (
                theirs["entra_key"] == user["entra_key"]
                or theirs["email"].lower() == user["email"]
                or (not theirs["email"] and theirs["login"].lower() == user["email"])
            )
    in_scope = {u["entra_key"] for u in members if u["active"] and pd.isna(u["skip_reason"])}
    for row in plan[len(members) :]:
        theirs = by_id[row["zammad_id"]]
        assert row["action"] in ("deactivate", "skip", "grace", "opted_out") and row["upn"] is None
        assert (row["entra_key"], row["email"]) == (theirs["entra_key"], theirs["email"])
        assert theirs["entrasync_profile"] == options.profile and theirs["active"]
        assert theirs["entra_key"] not in in_scope
    assert len(plan) >= len(members)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_planning_inputs())
def test_a_protected_account_is_never_written_whatever_the_case_of_its_login_or_email(inputs: tuple) -> None:
    users, zammad, options = inputs
    plan = compute_plan(users, zammad, options)
    by_id = _zammad_by_id(zammad)
    for row in rules.writes_of(plan).to_dict("records"):
        if row["action"] == "create":
            continue
        theirs = by_id[int(row["zammad_id"])]
        assert theirs["id"] not in options.protected_ids
        assert theirs["login"].lower() not in options.protected_logins
        assert theirs["email"].strip().lower() not in options.protected_emails
        assert not (options.protect_admins and set(theirs["role_ids"]) & options.admin_role_ids)
        assert theirs.get(rules.OPT_OUT_ATTRIBUTE) is not True, "an opted-out user was written"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_planning_inputs())
def test_a_second_run_on_the_applied_state_writes_nothing_whatever_the_rules(inputs: tuple) -> None:
    """With any scope rule, grace period, on_leave, opt-outs, hand edits, drift policy, manual
    deactivation, re-hire and login-only user: planning again after the writes plans none."""
    users, zammad, options = inputs
    applied = _apply(compute_plan(users, zammad, options), zammad)
    again = compute_plan(users, applied, options)
    writes = rules.writes_of(again)
    assert writes.empty, writes.to_dict("records")


@pytest.mark.parametrize(("wins", "department"), [("zammad", "Field Ops"), ("entra", "IT")])
def test_a_user_reactivated_after_a_manual_deactivation_keeps_or_loses_hand_edits_per_drift(
    wins: str, department: str
) -> None:
    """Found by trying it as an admin: the reactivation used to overwrite a kept hand edit unreported."""
    deactivated = {**EDITED, "active": False}
    row = _plan(
        [graph_user("jane.doe", department="IT")],
        [deactivated],
        last_written=WROTE,
        manual_deactivation="reactivate",
        drift_default=wins,
    ).iloc[0]
    assert row["action"] == "reactivate" and row["payload"]["active"] is True
    assert row["payload"].get("department", "Field Ops") == department
    kept_or_overwritten = "kept (drift: zammad)" if wins == "zammad" else "overwritten (drift: entra)"
    assert f"department {kept_or_overwritten}" in row["reason"]
