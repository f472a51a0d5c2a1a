"""Organizations: each member's Zammad organization, as Zammad stores and compares it.

Zammad keeps organization names unique ignoring case (``uniqueness: { case_sensitive: false }``)
and a user holds the organization's id, so entrasync finds an organization in any spelling, creates
one that is missing (unless ``create_missing`` is false), never renames or deletes one, and clears
only an organization it set itself when the member's source becomes empty. A second run writes
nothing. The rules are table tests; the job and the CLI run them against the sandbox.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from entrasync_pipeline import organizations
from entrasync_pipeline.normalize import Rule, normalize_members
from entrasync_pipeline.organizations import OrganizationRules
from entrasync_pipeline.plan import compute_plan, organization_counts
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import (
    graph_user,
    members_frame,
    normalize_options,
    plan_options,
    zammad_frame,
    zammad_user,
)
from entrasync_pipeline_tests.tenant import Admin, Helpdesk, Runner, it_support_config, setup_attributes

CONTOSO = OrganizationRules({"contoso gmbh": 7})


# --- the rules (pure) ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "current", "rules", "written", "changes", "note"),
    [
        pytest.param("Contoso GmbH", 7, CONTOSO, None, {}, "", id="already-set"),
        pytest.param("CONTOSO gmbh ", 7, CONTOSO, None, {}, "", id="other-spelling-is-the-same-organization"),
        pytest.param("Contoso GmbH", None, CONTOSO, None, {"organization_id": [None, 7]}, "", id="assign-existing"),
        pytest.param("Contoso GmbH", 3, CONTOSO, None, {"organization_id": [3, 7]}, "", id="move-to-existing"),
        pytest.param("Fabrikam", None, CONTOSO, None, {"organization": [None, "Fabrikam"]}, "", id="create-missing"),
        pytest.param(
            "Fabrikam",
            None,
            OrganizationRules({}, create_missing=False),
            None,
            {},
            "; organization 'Fabrikam' does not exist in Zammad (organization.create_missing: false): not set",
            id="missing-not-created",
        ),
        pytest.param("x" * 120, None, CONTOSO, None, {"organization": [None, "x" * 100]}, "", id="truncated-to-column"),
        pytest.param(None, None, CONTOSO, None, {}, "", id="empty-source-no-organization"),
        pytest.param(None, 7, CONTOSO, None, {"organization_id": [7, None]}, "", id="empty-source-first-pass-asks"),
        pytest.param(
            "",
            7,
            OrganizationRules({}, audited=True),
            {"organization_id": 7},
            {"organization_id": [7, None]},
            "",
            id="empty-source-clears-what-entrasync-set",
        ),
        pytest.param(None, 7, OrganizationRules({}, audited=True), {}, {}, "", id="empty-source-keeps-a-persons"),
        pytest.param(
            None,
            7,
            OrganizationRules({}, audited=True),
            {"organization_id": 3},
            {},
            "",
            id="empty-source-keeps-hand-edit",
        ),
    ],
)
def test_organization_changes(
    name: Any, current: Any, rules: OrganizationRules, written: Any, changes: dict[str, Any], note: str
) -> None:
    zammad = {"id": 50, "organization_id": current}
    assert organizations.changes(name, zammad, rules, written) == (changes, note)


def test_a_new_member_without_a_source_gets_no_organization_change() -> None:
    assert organizations.changes(None, None, CONTOSO) == ({}, "")


def test_names_are_indexed_ignoring_case_and_the_oldest_spelling_wins() -> None:
    ids = organizations.index([{"id": 9, "name": "ACME"}, {"id": 4, "name": "acme "}, {"id": 5, "name": ""}])
    assert ids == {"acme": 4}


def test_a_created_organization_becomes_the_id_in_payload_and_changes() -> None:
    row = {"payload": {"organization": "Fabrikam", "department": "IT"}, "changes": {"organization": [3, "Fabrikam"]}}
    resolved = organizations.resolved(row, {"fabrikam": 12})
    assert resolved["payload"] == {"department": "IT", "organization_id": 12}
    assert resolved["changes"] == {"organization_id": [3, 12]}
    assert organizations.resolved(row, {}) == row


# --- the plan (pure) -------------------------------------------------------------------------------
def _universal(*companies: str | None) -> pd.DataFrame:
    users = [graph_user(f"user.n{i}") for i in range(len(companies))]
    frame = members_frame(*users)
    frame["companyName"] = list(companies)
    options = normalize_options()
    mapping = {**options.mapping, "organization": Rule(("companyName",), None, ("first", "strip"))}
    return normalize_members(frame, normalize_options(mapping=mapping))


def _zammad(universal: pd.DataFrame, *org_ids: int | None) -> pd.DataFrame:
    users = [
        zammad_user(
            100 + i,
            u["email"],
            u["entra_key"],
            firstname=u["firstname"],
            lastname=u["lastname"],
            phone=u["phone"] or "",
            mobile=u["mobile"] or "",
            department=u["department"] or "",
            organization_id=oid,
        )
        for i, (u, oid) in enumerate(zip(universal.to_dict("records"), org_ids))
    ]
    return zammad_frame(*users)


def test_the_plan_assigns_existing_creates_missing_and_notes_what_it_may_not_create() -> None:
    universal = _universal("Contoso GmbH", "contoso gmbh", "Fabrikam", None)
    zammad = zammad_frame()
    plan = compute_plan(universal, zammad, plan_options(organizations=CONTOSO))
    payloads = plan["payload"].tolist()
    assert [p.get("organization_id") for p in payloads] == [7, 7, None, None]
    assert payloads[2]["organization"] == "Fabrikam" and "organization" not in payloads[3]
    assert organization_counts(plan) == {"organizations_to_create": 1, "organizations_missing": 0}
    strict = compute_plan(universal, zammad, plan_options(organizations=OrganizationRules({"contoso gmbh": 7}, False)))
    assert "organization" not in strict["payload"].tolist()[2]
    assert "create_missing: false" in strict["reason"].tolist()[2]
    assert organization_counts(strict) == {"organizations_to_create": 0, "organizations_missing": 1}


def test_the_fast_path_and_the_per_user_rules_agree_and_the_applied_state_is_noop() -> None:
    universal = _universal("Contoso GmbH", "CONTOSO GMBH", None, None)
    options = plan_options(organizations=CONTOSO)
    applied = _zammad(universal, 7, 7, None, 7)  # the last one: set by a person, source empty
    plan = compute_plan(universal, applied, options)
    assert plan["action"].tolist()[:3] == ["noop"] * 3
    assert plan["action"].tolist()[3] == "update"  # the first pass asks the audit (a hand-edit candidate)
    audited = dataclasses.replace(options, organizations=OrganizationRules(CONTOSO.ids, audited=True))
    assert compute_plan(universal, applied, audited)["action"].tolist() == ["noop"] * 4
    moved = compute_plan(universal, _zammad(universal, 3, 7, None, None), options)
    assert moved["changes"].tolist()[0] == {"organization_id": [3, 7]}


# --- the sandbox, the job and the CLI --------------------------------------------------------------
COMPANY = "Contoso Sandbox GmbH"  # the demo seed's companyName


def _orgs(sandbox: Sandbox) -> dict[str, int]:
    return {o["name"]: o["id"] for o in sandbox.state("zammad")["organizations"]}


def _managed(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [u for u in sandbox.state("zammad")["users"] if u.get("entrasync_profile") == "sandbox"]


def _writes(sandbox: Sandbox) -> dict[str, int]:
    return {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}


def _plan_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node("sync_plan")[0].metadata.items()}


def _runner(sandbox: Sandbox, tmp_path: Path, env: dict[str, str], instance: Any, **organization: Any) -> Runner:
    config = it_support_config(sandbox, tmp_path, organization={"from": ["companyName"], **organization})
    setup_attributes(config, env)
    return Runner(config, ["sandbox"], instance)


@pytest.mark.e2e
def test_the_job_creates_the_organization_once_assigns_it_and_a_second_run_writes_nothing(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner = _runner(sandbox, tmp_path, dagster_env, instance)
    first = runner.run()
    assert first.success
    managed = _managed(sandbox)
    objects = sandbox.state("graph")["objects"]
    company = {u["entra_key"]: objects[u["entra_key"]]["companyName"] for u in managed}
    assert COMPANY in company.values()
    names = sorted(set(company.values()))
    assert _plan_metadata(first)["organizations_to_create"] == len(names)
    assert runner.counts(first)["organizations_created"] == len(names)
    assert sandbox.stats("zammad")["requests"]["POST /api/v1/organizations"] == len(names)
    orgs = _orgs(sandbox)
    assert all(u["organization_id"] == orgs[company[u["entra_key"]]] for u in managed)
    rows = [r for r in _audit(runner, dagster_env, first.run_id) if r["action"] == "organization"]
    assert sorted((r["outcome"], r["changes"]["organization"][1]) for r in rows) == [("done", n) for n in names]
    before = _writes(sandbox)
    second = runner.counts(runner.run())
    assert (second["organizations_created"], second["updated"], second["created"]) == (0, 0, 0)
    assert _writes(sandbox) == before


@pytest.mark.e2e
def test_an_organization_in_another_spelling_is_used_not_created_or_renamed(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    token = sandbox.zammad_token("sync")
    response = http.post(
        f"{sandbox.info['zammad_url']}/api/v1/organizations",
        json={"name": COMPANY.upper()},
        headers={"Authorization": f"Token token={token}"},
    )
    assert response.status_code == 201, response.text
    runner = _runner(sandbox, tmp_path, dagster_env, instance)
    result = runner.run()
    assert result.success
    assert COMPANY.upper() in _orgs(sandbox) and COMPANY not in _orgs(sandbox)
    objects = sandbox.state("graph")["objects"]
    staff = [u for u in _managed(sandbox) if objects[u["entra_key"]]["companyName"] == COMPANY]
    assert staff and all(u["organization_id"] == response.json()["id"] for u in staff)
    created = [r for r in _audit(runner, dagster_env, result.run_id) if r["action"] == "organization"]
    assert runner.counts(result)["organizations_created"] == len(created) and COMPANY not in str(created)


@pytest.mark.e2e
def test_create_missing_false_reports_the_members_and_gives_them_none(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner = _runner(sandbox, tmp_path, dagster_env, instance, create_missing=False)
    result = runner.run()
    assert result.success
    planned = _plan_metadata(result)
    assert (
        planned["organizations_to_create"] == 0
        and planned["organizations_missing"] == planned["create"] + planned["update"] > 0
    )
    assert COMPANY not in _orgs(sandbox)
    assert all(u.get("organization_id") is None for u in _managed(sandbox))
    assert "POST /api/v1/organizations" not in sandbox.stats("zammad")["requests"]
    created = [r for r in _audit(runner, dagster_env, result.run_id) if r["action"] == "create"]
    assert all("create_missing: false" in r["reason"] for r in created)


@pytest.mark.e2e
def test_an_empty_source_clears_only_the_organization_entrasync_set_in_targeted_and_full_runs(
    sandbox: Sandbox, admin: Admin, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner = _runner(sandbox, tmp_path, dagster_env, instance)
    assert runner.run().success
    org, known = _orgs(sandbox)[COMPANY], len(_orgs(sandbox))
    ours, theirs = (u["entra_key"] for u in _managed(sandbox)[:2])
    helpdesk = Helpdesk(sandbox, http)
    helpdesk.edit(theirs, organization_id=1)  # a person puts them into "Zammad Foundation"
    admin.patch(ours, companyName=None)
    admin.patch(theirs, companyName=None)
    targeted = runner.targeted([ours, theirs])
    assert targeted.success
    assert helpdesk.user(ours)["organization_id"] is None
    assert helpdesk.user(theirs)["organization_id"] == 1  # set by a person: kept
    before = _writes(sandbox)
    full = runner.run()
    assert full.success and runner.counts(full)["updated"] == 0
    assert _writes(sandbox) == before
    admin.patch(ours, companyName=COMPANY.lower())  # back, in another spelling: the same organization
    assert runner.run().success
    assert helpdesk.user(ours)["organization_id"] == org and len(_orgs(sandbox)) == known


def _audit(runner: Runner, env: dict[str, str], run_id: str) -> list[dict[str, Any]]:
    from entrasync_pipeline.audit import AuditFilter, AuditStore
    from entrasync_pipeline.settings import load_settings

    audit = AuditStore(load_settings(runner.config).audit_url(env))
    try:
        return audit.query(AuditFilter(run_id=run_id))
    finally:
        audit.close()


def test_the_cli_summary_counts_the_organizations_created(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    from entrasync_pipeline_tests.test_cli import entrasync

    config = it_support_config(sandbox, tmp_path, organization={"from": ["companyName"]})
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    assert entrasync("zammad-setup", env=env).returncode == 0
    planned = json.loads(entrasync("plan", "--json", env=env).stdout)
    wanted = planned["organizations_created"]  # would: the demo's company and the guest's partner
    assert wanted == 2 and len(_orgs(sandbox)) == 1  # a dry run creates nothing
    synced = entrasync("sync", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["organizations_created"] == wanted and COMPANY in _orgs(sandbox)
    table = entrasync("sync", env=env)
    assert table.returncode == 0 and "organizati" in table.stdout
    again = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert (again["organizations_created"], again["updated"], again["created"]) == (0, 0, 0)
    assert sandbox.stats("zammad")["requests"]["POST /api/v1/organizations"] == wanted


@pytest.mark.e2e
def test_an_organization_zammad_refuses_to_create_leaves_the_members_written_without_it_until_the_next_run(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner = _runner(sandbox, tmp_path, dagster_env, instance)
    sandbox.faults("zammad", {"route": "POST /api/v1/organizations", "rate": 1.0, "statuses": [500]})
    first = runner.run()
    assert first.success and runner.counts(first)["organizations_created"] == 0
    assert runner.counts(first)["created"] > 0 and all(u["organization_id"] is None for u in _managed(sandbox))
    rows = _audit(runner, dagster_env, first.run_id)
    failed = [r for r in rows if r["action"] == "organization"]
    assert failed and all(r["outcome"] == "failed" and r["error"] for r in failed)
    created = [r for r in rows if r["action"] == "create" and r["outcome"] == "done"]
    assert all("not created" in r["reason"] for r in created)
    sandbox.faults("zammad")
    second = runner.run()
    assert second.success and runner.counts(second)["organizations_created"] == len(failed)
    assert all(u["organization_id"] for u in _managed(sandbox))
