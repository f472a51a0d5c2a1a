"""Organizational contacts (contacts.py, and normalize's and plan's use of them): a contact is read
in the users' vocabulary, becomes a customer with entra_object_type=contact, and follows the users'
lifecycle; without ``contacts`` it is skipped and counted as before.

The pure rules first, then the job, the change feed and the CLI against the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from entrasync_pipeline import contacts
from entrasync_pipeline.normalize import (
    LIMITED_CONTACT_REASON,
    NO_CONTACT_EMAIL_REASON,
    normalize_members,
    normalize_user,
    skipped_member_types,
)
from entrasync_pipeline.plan import CONTACTS_OFF, LEFT_GROUPS, USER_HOLDS_EMAIL, Action, compute_plan
from entrasync_pipeline.settings import FIXED_SELECT
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import (
    GROUP,
    graph_user,
    normalize_options,
    plan_options,
    write_config,
    zammad_frame,
    zammad_user,
)
from entrasync_pipeline_tests.tenant import Admin, Runner, it_support_config, setup_attributes, user_writes

CONTACT_ID = "5d6e7f80-0000-4000-8000-00000000c0de"
USER_SELECT = [*FIXED_SELECT, "businessPhones", "mobilePhone", "department", "companyName", "city"]


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
    assert row["skip_reason"] == NO_CONTACT_EMAIL_REASON


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


def test_a_contact_with_a_users_address_yields_it_and_the_user_is_decided_as_alone() -> None:
    jane = graph_user("jane.doe", department="Sales")
    twin = contact(mail="Jane.Doe@contoso.example")
    linked = zammad_user(10, "jane.doe@contoso.example", jane["id"])
    plan = compute_plan(_universal(jane, twin), zammad_frame(linked), plan_options(contacts=True))
    decided = dict(zip(plan["entra_key"], zip(plan["action"], plan["reason"])))
    assert decided[jane["id"]][0] == Action.UPDATE.value  # the user's department change goes through
    assert decided[CONTACT_ID] == (Action.CONFLICT.value, USER_HOLDS_EMAIL)
    fresh = compute_plan(_universal(jane, twin), zammad_frame(), plan_options(contacts=True))
    assert dict(zip(fresh["entra_key"], fresh["action"])) == {
        jane["id"]: Action.CREATE.value,
        CONTACT_ID: Action.CONFLICT.value,
    }


@pytest.mark.parametrize(
    "roles, action",
    [((3,), Action.UPDATE), ((2,), Action.CONFLICT), ((2, 3), Action.CONFLICT), ((), Action.UPDATE)],
    ids=["customer", "agent", "agent-and-customer", "no-role"],
)
def test_a_contact_adopts_only_a_customer_never_a_staff_account(roles: tuple[int, ...], action: Action) -> None:
    unlinked = zammad_user(30, "support@vendor.example", None, role_ids=roles, department="")
    options = plan_options(contacts=True, customer_role_ids=frozenset({3}), protect_admins=False)
    row = compute_plan(_universal(contact()), zammad_frame(unlinked), options).iloc[0]
    assert row["action"] == action.value
    if action is Action.CONFLICT:
        assert "not a customer" in row["reason"] and "#30" in row["reason"]


def test_a_contact_left_over_after_contacts_none_is_deactivated_saying_why() -> None:
    plan = compute_plan(_universal(graph_user("jane.doe")), zammad_frame(_contact_in_zammad()), plan_options())
    row = plan[plan["entra_key"] == CONTACT_ID].iloc[0]
    assert (row["action"], row["reason"]) == (Action.DEACTIVATE.value, CONTACTS_OFF)
    kept = compute_plan(
        _universal(graph_user("jane.doe")), zammad_frame(_contact_in_zammad()), plan_options(contacts=True)
    )
    assert kept[kept["entra_key"] == CONTACT_ID].iloc[0]["reason"] == LEFT_GROUPS


@pytest.mark.parametrize("roles, action", [((3,), Action.RELINK), ((2,), Action.CONFLICT)], ids=["customer", "agent"])
def test_a_deleted_users_zammad_account_is_relinked_to_a_contact_only_if_a_customer_saying_so(
    roles: tuple[int, ...], action: Action
) -> None:
    gone = graph_user("sam.support")["id"]
    linked = zammad_user(10, "support@vendor.example", gone, role_ids=roles)
    options = plan_options(contacts=True, customer_role_ids=frozenset({3}), deleted_keys=frozenset({gone}))
    row = compute_plan(_universal(contact()), zammad_frame(linked), options).iloc[0]
    assert row["action"] == action.value
    if action is Action.RELINK:
        assert row["reason"].endswith("(a contact now, a user before)")


# --- the sandbox, the job, the feed and the CLI ---------------------------------------------------------
PHONES = [{"number": "+49 30 5550100", "type": "business"}, {"number": "+49 170 5550100", "type": "mobile"}]


def _zammad_user(sandbox: Sandbox, entra_key: str) -> dict[str, Any] | None:
    return next((u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == entra_key), None)


def _role_id(sandbox: Sandbox, http: Any, name: str) -> int:
    headers = {"Authorization": f"Token token={sandbox.zammad_token('sync')}"}
    roles = http.get(f"{sandbox.info['zammad_url']}/api/v1/roles", headers=headers).json()
    return next(int(r["id"]) for r in roles if r["name"] == name)


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _runner(sandbox: Sandbox, tmp_path: Path, env: dict[str, str], instance: Any, **extra: Any) -> Runner:
    config = it_support_config(sandbox, tmp_path, **extra)
    setup_attributes(config, env)
    return Runner(config, ["sandbox"], instance)


@pytest.mark.e2e
def test_a_contact_member_is_a_customer_and_follows_the_users_lifecycle(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    admin = Admin(sandbox, http)
    it_support = sandbox.info["groups"]["IT Support"]
    cid = admin.contact("pat.partner", group=it_support, company="Partner AG", phones=PHONES, department="Consulting")
    groups = [{"id": it_support, "name": "IT Support", "roles": ["Agent"], "zammad_groups": {"Users": ["full"]}}]
    runner = _runner(
        sandbox,
        tmp_path,
        dagster_env,
        instance,
        groups=groups,
        contacts="members",
        organization={"from": ["companyName"]},
    )

    first = runner.run()
    assert first.success
    assert _metadata(first, "entra_group_members")["contacts_read"] == 1
    contact = _zammad_user(sandbox, cid)
    assert contact is not None and contact["active"] is True
    assert (contact["entra_object_type"], contact["email"]) == ("contact", "pat.partner@partner.example")
    assert (contact["firstname"], contact["lastname"]) == ("Pat", "Partner")
    assert (contact["phone"], contact["mobile"], contact["department"]) == (
        "+49 30 5550100",
        "+49 170 5550100",
        "Consulting",
    )
    assert contact["role_ids"] == [_role_id(sandbox, http, "Customer")]  # a customer, though the group maps to Agent
    assert not contact.get("group_ids")  # and no agent group access
    orgs = {o["id"]: o["name"] for o in sandbox.state("zammad")["organizations"]}
    assert orgs[contact["organization_id"]] == "Partner AG"

    writes = user_writes(sandbox)
    assert runner.run().success and user_writes(sandbox) == writes  # a second run writes nothing

    admin.patch_contact(cid, department="Escalations")
    assert runner.run().success and _zammad_user(sandbox, cid)["department"] == "Escalations"

    admin.remove(it_support, cid)  # a targeted run (as the feed starts it) finds it gone from the group
    targeted = runner.targeted([cid])
    assert targeted.success and _zammad_user(sandbox, cid)["active"] is False
    writes = user_writes(sandbox)
    assert runner.run().success and user_writes(sandbox) == writes  # the full run agrees

    admin.add(it_support, cid)
    assert runner.run().success and _zammad_user(sandbox, cid)["active"] is True  # back: reactivated

    admin.delete_contact(cid)
    deleted = runner.run()
    assert deleted.success and _zammad_user(sandbox, cid)["active"] is False  # deleted: deactivated, kept
    assert runner.counts(deleted)["deactivated"] == 1


@pytest.mark.e2e
def test_without_contacts_a_contact_member_is_counted_and_never_written(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    cid = Admin(sandbox, http).contact("pat.partner", group=sandbox.info["groups"]["IT Support"], phones=PHONES)
    result = _runner(sandbox, tmp_path, dagster_env, instance).run()
    assert result.success
    metadata = _metadata(result, "entra_group_members")
    assert metadata["member_types_skipped"]["orgContact"] == 1 and metadata["contacts_read"] == 1
    assert _zammad_user(sandbox, cid) is None


@pytest.mark.e2e
def test_contacts_all_syncs_every_contact_of_the_tenant_in_a_group_or_not(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    admin = Admin(sandbox, http)
    loner = admin.contact("lou.loner", company="Loner Ltd")  # in no group at all
    vendor = next(o for o, v in sandbox.state("graph")["objects"].items() if v.get("displayName") == "Vendor Support")
    runner = _runner(sandbox, tmp_path, dagster_env, instance, contacts="all")
    first = runner.run()
    assert first.success
    assert _zammad_user(sandbox, loner)["entra_object_type"] == "contact"
    assert _zammad_user(sandbox, vendor)["active"] is True  # the demo's contact, in Sales (not configured)
    writes = user_writes(sandbox)
    assert runner.run().success and user_writes(sandbox) == writes
    admin.delete_contact(loner)
    assert runner.run().success and _zammad_user(sandbox, loner)["active"] is False


def _no_contacts_config(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contacts: str) -> Path:
    """The sync app as it was before contacts: GroupMember.Read.All and User.Read.All only."""
    info, app = sandbox.info, sandbox.app("no_contacts_app")
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", app["client_secret"])
    entra = {
        "tenant_id": info["tenant_id"],
        "client_id": app["client_id"],
        "credential": "secret",
        "authority_host": info["graph_url"],
        "graph_url": info["graph_url"],
    }
    groups = [{"id": info["groups"]["IT Support"], "name": "IT Support"}]
    profile = {"groups": groups, "entra": entra, "contacts": contacts}
    return write_config(tmp_path / "entrasync.yaml", info, {"sandbox": profile})


@pytest.mark.e2e
def test_contacts_without_org_contact_read_are_skipped_naming_the_permission(
    sandbox: Sandbox,
    http: Any,
    tmp_path: Path,
    dagster_env: dict[str, str],
    instance: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entrasync_pipeline.audit import AuditFilter, AuditStore
    from entrasync_pipeline.settings import load_settings

    cid = Admin(sandbox, http).contact("pat.partner", group=sandbox.info["groups"]["IT Support"])
    config = _no_contacts_config(sandbox, tmp_path, monkeypatch, "members")
    setup_attributes(config, dagster_env)
    result = Runner(config, ["sandbox"], instance).run()
    assert result.success and _zammad_user(sandbox, cid) is None
    audit = AuditStore(load_settings(config).audit_url(dagster_env))
    try:
        rows = [r for r in audit.query(AuditFilter(run_id=result.run_id)) if r["entra_key"] == cid]
    finally:
        audit.close()
    assert [r["action"] for r in rows] == ["skip"] and "OrgContact.Read.All" in rows[0]["reason"]


@pytest.mark.e2e
def test_contacts_all_without_org_contact_read_fails_at_once_with_graphs_refusal(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _no_contacts_config(sandbox, tmp_path, monkeypatch, "all")
    setup_attributes(config, dagster_env)
    before = sandbox.stats("graph")["requests"].get("GET /v1.0/contacts", 0)
    writes = user_writes(sandbox)
    result = Runner(config, ["sandbox"], instance).run()
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "Authorization_RequestDenied" in str(failure.event_specific_data.error)
    assert "OrgContact.Read.All" in str(failure.event_specific_data.error)
    assert sandbox.stats("graph")["requests"].get("GET /v1.0/contacts", 0) - before == 1  # not retried
    assert user_writes(sandbox) == writes


def test_the_cli_plans_and_syncs_a_contact_named_by_mail(
    sandbox: Sandbox, http: Any, environ: dict[str, str], tmp_path: Path
) -> None:
    from entrasync_pipeline_tests.test_cli import entrasync

    cid = Admin(sandbox, http).contact("pat.partner", group=sandbox.info["groups"]["IT Support"], phones=PHONES)
    config = it_support_config(sandbox, tmp_path, contacts="members")
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    assert entrasync("zammad-setup", env=env).returncode == 0
    planned = entrasync("plan", "--user", "pat.partner@partner.example", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["created"] == 1 and _zammad_user(sandbox, cid) is None
    synced = entrasync("sync", "--user", "pat.partner@partner.example", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["created"] == 1
    assert _zammad_user(sandbox, cid)["entra_object_type"] == "contact"
    again = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert cid not in [c["entra_key"] for c in again["changes"]]  # the full run leaves the contact as it is
    assert again["contacts_read"] == 1 and _zammad_user(sandbox, cid)["mobile"] == "+49 170 5550100"
    assert "organizational contacts read: 1" in entrasync("sync", env=env).stdout
    Admin(sandbox, http).delete_contact(cid)  # gone from Entra: offboarded on demand by its object id
    gone = entrasync("sync", "--user", cid, "--json", env=env)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["deactivated"] == 1 and _zammad_user(sandbox, cid)["active"] is False


@pytest.mark.e2e
def test_the_change_feed_starts_targeted_runs_for_a_contacts_membership_and_property_changes(
    sandbox: Sandbox,
    http: Any,
    tmp_path: Path,
    environ: dict[str, str],
    dagster_env: dict[str, str],
    instance: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entrasync_pipeline_tests.test_sensors import _targets, _tick

    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    sales = sandbox.info["groups"]["Sales"]
    config = write_config(
        tmp_path / "entrasync.yaml",
        sandbox.info,
        {"sandbox": {"groups": [{"id": sales, "name": "Sales"}], "contacts": "members"}},
    )
    setup_attributes(config, dagster_env)
    admin, runner = Admin(sandbox, http), Runner(config, ["sandbox"], instance)
    cursor = _tick(config, None).cursor

    cid = admin.contact("pat.partner", group=sales, phones=PHONES)  # joins a watched group
    fired = _tick(config, cursor)
    assert [_targets(r) for r in fired.run_requests] == [[cid]]
    assert runner.targeted([cid]).success and _zammad_user(sandbox, cid)["entra_object_type"] == "contact"

    admin.patch_contact(cid, department="Escalations")  # contacts/delta: a contact the profile knows
    fired = _tick(config, fired.cursor)
    assert [_targets(r) for r in fired.run_requests] == [[cid]]
    assert runner.targeted([cid]).success and _zammad_user(sandbox, cid)["department"] == "Escalations"

    admin.remove(sales, cid)  # leaves the group: offboarded by a targeted run
    fired = _tick(config, fired.cursor)
    assert [_targets(r) for r in fired.run_requests] == [[cid]]
    assert runner.targeted([cid]).success and _zammad_user(sandbox, cid)["active"] is False

    quiet = _tick(config, fired.cursor)
    assert not quiet.run_requests


@pytest.mark.e2e
def test_without_contacts_the_feed_ignores_a_contact_joining_a_watched_group(
    sandbox: Sandbox, http: Any, tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from entrasync_pipeline_tests.test_sensors import _tick

    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    sales = sandbox.info["groups"]["Sales"]
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, {"sandbox": {"groups": [{"id": sales}]}})
    cursor = _tick(config, None).cursor
    Admin(sandbox, http).contact("pat.partner", group=sales)
    assert not _tick(config, cursor).run_requests


@pytest.mark.e2e
def test_an_employee_back_as_a_contact_loses_the_organization_entrasync_set_in_one_run(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    """Found by test_incremental's state machine: a relink (the employee's account deleted, a
    contact with their mail) was not among the users whose audit the plan reads, so when another
    user made the plan read the audit, the relink kept the organization entrasync had set (as if
    a person had set it) and the next run cleared it: a second run wrote."""
    admin = Admin(sandbox, http)
    state = sandbox.state("graph")["objects"]
    by_mail = {o.get("mail"): oid for oid, o in state.items()}
    anna, jonas = by_mail["anna.schmidt@contoso.example"], by_mail["jonas.weber@contoso.example"]
    runner = _runner(
        sandbox, tmp_path, dagster_env, instance, contacts="members", organization={"from": ["companyName"]}
    )
    assert runner.run().success
    assert _zammad_user(sandbox, anna)["organization_id"] is not None  # her company, set by entrasync

    admin.delete(anna)
    cid = admin.contact("anna.consultant", sandbox.info["groups"]["IT Support"], mail="anna.schmidt@contoso.example")
    admin.patch(jonas, companyName=None)  # another user's organization to clear: the plan reads the audit
    relinked = runner.run()
    assert relinked.success
    contact = _zammad_user(sandbox, cid)
    assert contact is not None and contact["entra_object_type"] == "contact"
    assert contact["organization_id"] is None  # the contact has no company: entrasync's organization goes
    writes = user_writes(sandbox)
    assert runner.run().success and user_writes(sandbox) == writes  # a second run writes nothing
