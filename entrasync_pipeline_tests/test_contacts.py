"""Organizational contacts (contacts.py, and normalize's and plan's use of them): a contact is read
in the users' vocabulary, becomes a customer with entra_object_type=contact, and follows the users'
lifecycle; without ``contacts`` it is skipped and counted as before.

The end-to-end tests (the job and the CLI against the sandbox) are in test_contacts_e2e.py.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from entrasync_pipeline import contacts
from entrasync_pipeline.normalize import (
    LIMITED_CONTACT_REASON,
    NO_EMAIL_REASON,
    normalize_members,
    normalize_user,
    skipped_member_types,
)
from entrasync_pipeline.plan import Action, compute_plan
from entrasync_pipeline_tests.factories import (
    GROUP,
    PROFILE,
    graph_user,
    normalize_options,
    plan_options,
    zammad_frame,
    zammad_user,
)

CONTACT_ID = "5d6e7f80-0000-4000-8000-00000000c0de"
USER_SELECT = [
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "otherMails",
    "userPrincipalName",
    "accountEnabled",
    "userType",
    "businessPhones",
    "mobilePhone",
    "department",
    "companyName",
    "city",
]


def contact(**overrides: Any) -> dict[str, Any]:
    """An orgContact member item as Graph returns it for the users' $select plus phones/addresses."""
    item = {
        "@odata.type": contacts.CONTACT_TYPE,
        "id": CONTACT_ID,
        "displayName": "Vendor Support",
        "givenName": "Vendor",
        "surname": "Support",
        "mail": "Support@Vendor.example",
        "department": "Service Desk",
        "companyName": "Vendor Ltd",
        "phones": [
            {"type": "business", "number": "+44 20 7946 0000"},
            {"type": "mobile", "number": "+44 7700 900000"},
            {"type": "businessFax", "number": "+44 20 7946 0001"},
        ],
        "addresses": [{"city": "London", "street": "1 High St", "countryOrRegion": "UK"}],
    }
    item.update(overrides)
    return item


def frame(*items: dict[str, Any], group: str = GROUP) -> pd.DataFrame:
    """A member snapshot as read_entra_members builds it: the member select's columns, absent ones None."""
    columns = ["group_id", "group_name", "@odata.type", *contacts.member_select(USER_SELECT)]
    rows = [{"group_id": group, "group_name": "IT Support", **item} for item in items]
    return pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)


def with_contacts(**overrides: Any) -> Any:
    return normalize_options(contacts=True, **overrides)


# --- reading ---------------------------------------------------------------------------------------
def test_the_member_select_adds_what_a_contact_has_instead_of_user_phones_and_addresses() -> None:
    assert contacts.member_select(["id", "mail"]) == ["id", "mail"]
    assert contacts.member_select(["id", "mobilePhone", "city"]) == ["id", "mobilePhone", "city", "phones", "addresses"]


def test_the_contacts_select_names_only_properties_an_org_contact_has() -> None:
    select = contacts.contact_select(USER_SELECT)
    assert set(select) <= contacts.PROPERTIES
    assert {"mail", "companyName", "phones", "addresses"} <= set(select)
    assert not {"accountEnabled", "userPrincipalName", "businessPhones", "mobilePhone", "otherMails"} & set(select)


def test_a_contact_reads_as_a_user_typed_phones_and_its_one_address() -> None:
    user = contacts.as_user(contact(), USER_SELECT)
    assert user["businessPhones"] == ["+44 20 7946 0000"]
    assert user["mobilePhone"] == "+44 7700 900000"
    assert user["city"] == "London"
    assert user["accountEnabled"] is None and user["userPrincipalName"] is None
    assert "phones" not in user and "addresses" not in user


def test_a_contact_without_phones_or_address_has_none() -> None:
    user = contacts.as_user(contact(phones=[], addresses=[]), USER_SELECT)
    assert user["businessPhones"] == [] and user["mobilePhone"] is None and user["city"] is None


def test_the_frame_translation_equals_the_per_item_one_and_leaves_users_alone() -> None:
    jane = {**graph_user("jane.doe"), "companyName": "Contoso", "city": "Berlin"}
    members = frame(jane, contact(), contact(id="c2", phones=None, addresses=None))
    out = contacts.as_user_rows(members)
    assert "phones" not in out.columns and "addresses" not in out.columns
    rows = out.to_dict("records")
    assert rows[0]["businessPhones"] == jane["businessPhones"] and rows[0]["accountEnabled"] is True
    for row, item in zip(rows[1:], members.to_dict("records")[1:]):
        expected = contacts.as_user(item, list(out.columns))
        assert {k: row[k] for k in expected} == expected


# --- normalize -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["column-wise", "per-user"])
def test_a_contact_becomes_a_universal_user_of_type_contact(path: str) -> None:
    options = with_contacts()
    if path == "column-wise":
        row = normalize_members(frame(contact()), options).iloc[0].to_dict()
    else:
        row = normalize_user(frame(contact()).iloc[0].to_dict(), options)
    assert row["entra_object_type"] == "contact"
    assert row["email"] == "support@vendor.example"
    assert (row["firstname"], row["lastname"]) == ("Vendor", "Support")
    assert (row["phone"], row["mobile"]) == ("+44 20 7946 0000", "+44 7700 900000")
    assert row["active"] is True and row["skip_reason"] is None


def test_without_contacts_a_contact_is_skipped_and_counted_as_before() -> None:
    members = frame(graph_user("jane.doe"), contact())
    assert list(normalize_members(members, normalize_options())["entra_object_type"]) == ["user"]
    assert skipped_member_types(members) == {"orgContact": 1}
    assert skipped_member_types(members, with_contacts=True) == {}


def test_a_contact_graph_returned_without_properties_is_skipped_naming_the_permission() -> None:
    limited = {"@odata.type": contacts.CONTACT_TYPE, "id": CONTACT_ID}
    row = normalize_members(frame(limited), with_contacts()).iloc[0]
    assert row["skip_reason"] == LIMITED_CONTACT_REASON and "OrgContact.Read.All" in row["skip_reason"]


def test_a_contact_without_mail_is_skipped_like_a_user() -> None:
    row = normalize_members(frame(contact(mail=None)), with_contacts()).iloc[0]
    assert row["skip_reason"] == NO_EMAIL_REASON


def test_a_contact_is_a_customer_even_in_a_group_mapped_to_agents() -> None:
    options = with_contacts(group_roles={GROUP: ("Agent",)})
    users = normalize_members(frame(graph_user("jane.doe"), contact()), options)
    assert list(users["roles"]) == [("Agent",), ("Customer",)]


def test_the_mapping_reads_a_contacts_company_like_a_users() -> None:
    from entrasync_pipeline.normalize import Rule

    mapping = {**normalize_options().mapping, "note": Rule(("companyName",))}
    row = normalize_members(frame(contact()), with_contacts(mapping=mapping)).iloc[0]
    assert row["note"] == "Vendor Ltd"


# --- plan --------------------------------------------------------------------------------------------
def _universal(*items: dict[str, Any], **options: Any) -> pd.DataFrame:
    return normalize_members(frame(*items), with_contacts(**options))


def _contact_in_zammad(**overrides: Any) -> dict[str, Any]:
    fields = {
        "firstname": "Vendor",
        "lastname": "Support",
        "phone": "+44 20 7946 0000",
        "mobile": "+44 7700 900000",
        "department": "Service Desk",
        "entra_object_type": "contact",
    }
    return zammad_user(20, "support@vendor.example", CONTACT_ID, **{**fields, **overrides})


def test_a_new_contact_is_created_with_its_object_type() -> None:
    plan = compute_plan(_universal(contact()), zammad_frame(), plan_options())
    row = plan.iloc[0]
    assert row["action"] == Action.CREATE.value
    assert row["payload"]["entra_object_type"] == "contact" and row["payload"]["entra_key"] == CONTACT_ID


def test_a_synced_contact_is_left_alone_and_a_changed_one_updated() -> None:
    assert list(compute_plan(_universal(contact()), zammad_frame(_contact_in_zammad()), plan_options())["action"]) == [
        "noop"
    ]
    plan = compute_plan(
        _universal(contact(department="Escalations")), zammad_frame(_contact_in_zammad()), plan_options()
    )
    assert list(plan["action"]) == ["update"] and plan.iloc[0]["changes"] == {
        "department": ["Service Desk", "Escalations"]
    }


def test_a_zammad_user_linked_as_a_user_is_corrected_to_contact() -> None:
    plan = compute_plan(
        _universal(contact()), zammad_frame(_contact_in_zammad(entra_object_type="user")), plan_options()
    )
    assert list(plan["action"]) == ["update"]
    assert plan.iloc[0]["changes"] == {"entra_object_type": ["user", "contact"]}


def test_a_contact_who_left_is_deactivated_and_one_who_returns_reactivated() -> None:
    gone = compute_plan(_universal(graph_user("jane.doe")), zammad_frame(_contact_in_zammad()), plan_options())
    assert dict(zip(gone["entra_key"], gone["action"]))[CONTACT_ID] == Action.DEACTIVATE.value
    back = compute_plan(_universal(contact()), zammad_frame(_contact_in_zammad(active=False)), plan_options())
    assert list(back["action"]) == [Action.REACTIVATE.value]


def test_a_contact_gets_no_agent_group_access() -> None:
    options = plan_options(
        group_access={GROUP: {"Support": ["full"]}},
        zammad_group_ids={"Support": 2},
        agent_role_ids=frozenset({2}),
    )
    plan = compute_plan(_universal(contact()), zammad_frame(_contact_in_zammad()), options)
    assert list(plan["action"]) == ["noop"] and "group_ids" not in (plan.iloc[0]["changes"] or {})
    assert PROFILE == plan_options().profile
