"""Targeted runs: the same job, scoped to some Entra ids, over the sandbox (msal over TLS, $batch, Zammad).

Each test syncs "IT Support" fully once, changes the tenant as an admin would, runs the job for
the changed users only, and checks Zammad, the scope the run records and what a full run then finds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from entrasync_pipeline.audit import AuditFilter, AuditStore
from entrasync_pipeline.settings import load_settings
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.tenant import Admin, Runner, it_support_config, setup_attributes

pytestmark = pytest.mark.e2e


@pytest.fixture
def synced(
    sandbox: Sandbox, tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, instance: Any
) -> Runner:
    """IT Support synced once by a full run."""
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    config = it_support_config(sandbox, tmp_path)
    setup_attributes(config, environ)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success
    return runner


def _user(sandbox: Sandbox, email: str) -> str:
    return next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("mail") == email)


def _zammad(sandbox: Sandbox, entra_key: str) -> list[dict[str, Any]]:
    return [u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == entra_key]


def _writes(sandbox: Sandbox) -> dict[str, int]:
    return {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}


def _full_run_writes_nothing(runner: Runner, sandbox: Sandbox) -> None:
    before = _writes(sandbox)
    counts = runner.counts(runner.run())
    assert (counts["created"], counts["updated"], counts["deactivated"], counts["reactivated"]) == (0, 0, 0, 0)
    assert _writes(sandbox) == before


def test_a_targeted_run_writes_only_its_users_and_a_full_run_then_finds_nothing_left(
    sandbox: Sandbox, admin: Admin, synced: Runner
) -> None:
    anna, other = _user(sandbox, "anna.schmidt@contoso.example"), None
    it_support = sandbox.info["groups"]["IT Support"]
    other = next(m for m in admin.members(it_support) if m != anna and _zammad(sandbox, m))
    admin.patch(anna, department="Field Service")
    admin.patch(other, department="Back Office")
    counts = synced.counts(synced.targeted([anna]))
    assert counts["updated"] == 1
    assert _zammad(sandbox, anna)[0]["department"] == "Field Service"
    assert _zammad(sandbox, other)[0]["department"] != "Back Office"  # not asked about: untouched
    assert synced.counts(synced.run())["updated"] == 1  # the reconcile finds only the other one
    _full_run_writes_nothing(synced, sandbox)


def test_a_disable_a_removal_a_deletion_and_a_hire_each_reach_zammad_in_one_targeted_run(
    sandbox: Sandbox, admin: Admin, synced: Runner
) -> None:
    it_support = sandbox.info["groups"]["IT Support"]
    members = [m for m in admin.members(it_support) if _zammad(sandbox, m)]
    disabled, removed, deleted = members[:3]
    admin.patch(disabled, accountEnabled=False)
    admin.remove(it_support, removed)
    admin.delete(deleted)
    hired = admin.hire("nora.new", it_support)
    for server in ("graph", "zammad"):
        sandbox.control("DELETE", server, "stats")
    result = synced.targeted([disabled, removed, deleted, hired], approve_deactivations=3)  # 3 of 20 > 10 %
    counts = synced.counts(result)
    assert (counts["deactivated"], counts["created"]) == (3, 1)
    assert all(not _zammad(sandbox, k)[0]["active"] for k in (disabled, removed, deleted))
    assert _zammad(sandbox, hired)[0]["email"] == "nora.new@contoso.example"
    graph = sandbox.stats("graph")["requests"]
    assert graph.get("POST /v1.0/$batch") == 1  # 4 users and their memberships: one batch
    assert not any("/members" in route for route in graph)  # no group listing
    assert "GET /api/v1/users" not in sandbox.stats("zammad")["requests"]  # no Zammad listing
    _full_run_writes_nothing(synced, sandbox)


def test_targeted_deactivations_count_against_the_population_of_the_last_full_run(
    sandbox: Sandbox, admin: Admin, synced: Runner
) -> None:
    it_support = sandbox.info["groups"]["IT Support"]
    leavers = [m for m in admin.members(it_support) if _zammad(sandbox, m)][:2]
    for leaver in leavers:
        admin.remove(it_support, leaver)
    # 2 of ~20 managed users is within 10 % only when counted against all of them, not the 2 targets
    counts = synced.counts(synced.targeted(leavers))
    assert counts["deactivated"] == 2


def test_a_targeted_run_over_the_threshold_is_blocked_like_a_full_one(
    sandbox: Sandbox, admin: Admin, synced: Runner
) -> None:
    it_support = sandbox.info["groups"]["IT Support"]
    leavers = [m for m in admin.members(it_support) if _zammad(sandbox, m)][:6]
    for leaver in leavers:
        admin.remove(it_support, leaver)
    result = synced.targeted(leavers)
    safety = result.get_asset_check_evaluations()
    assert not next(c for c in safety if c.check_name == "sync_plan_safety").passed
    assert all(_zammad(sandbox, k)[0]["active"] for k in leavers)


def test_a_targeted_run_records_its_scope_and_leaves_no_partial_snapshot_behind(
    sandbox: Sandbox, admin: Admin, synced: Runner, instance: Any
) -> None:
    anna = _user(sandbox, "anna.schmidt@contoso.example")
    result = synced.targeted([anna])
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["entrasync/scope"] == "targeted" and run.tags["entrasync/targets"] == "1"
    for node in ("entra_group_members", "universal_users", "zammad_users", "sync_plan", "zammad_sync"):
        metadata = result.asset_materializations_for_node(node)[0].metadata
        assert metadata["scope"].value == "targeted" and metadata["targets"].value == 1, node
    trace = result.asset_materializations_for_node("sync_plan")[0].metadata["targets_trace"].value
    assert trace[0]["entra_key"] == anna and trace[0]["scope"].startswith("in scope: member of IT Support")
    full = synced.run()
    assert full.asset_materializations_for_node("zammad_users")[0].metadata["scope"].value == "full"
    assert full.output_for_node("zammad_users").shape[0] > 20  # a full run reads everything again


def test_a_user_neither_in_entra_nor_in_zammad_is_a_noop(sandbox: Sandbox, synced: Runner) -> None:
    result = synced.targeted(["00000000-0000-0000-0000-0000000000aa"])
    assert result.success
    counts = synced.counts(result)
    assert sum(counts[k] for k in ("created", "updated", "deactivated", "reactivated")) == 0


def test_the_audit_links_targets_to_their_zammad_users(sandbox: Sandbox, admin: Admin, synced: Runner) -> None:
    it_support = sandbox.info["groups"]["IT Support"]
    hired = admin.hire("olga.quick", it_support)
    synced.run()
    settings = load_settings(synced.config)
    store = AuditStore(settings.audit_url())
    try:
        known = store.known_users("sandbox", [hired, "unknown-id"])
        created = [r for r in store.query(AuditFilter(user=hired)) if r["outcome"] == "done"]
    finally:
        store.close()
    assert known == {hired: created[-1]["zammad_id"]}
    admin.patch(hired, department="Quick Response")
    sandbox.control("DELETE", "zammad", "stats")
    synced.targeted([hired])
    reads = sandbox.stats("zammad")["requests"]
    assert reads.get("GET /api/v1/users/{id}", 0) >= 1 and "POST /api/v1/users/search" not in reads


def test_a_targeted_run_stores_its_tables_apart_so_a_full_reexecution_never_loads_them(
    sandbox: Sandbox, synced: Runner, instance: Any
) -> None:
    full = synced.run()
    anna = _user(sandbox, "anna.schmidt@contoso.example")
    targeted = synced.targeted([anna])
    paths = {
        scope: result.asset_materializations_for_node("universal_users")[0].metadata["path"].value
        for scope, result in (("full", full), ("targeted", targeted))
    }
    assert f"/targeted/{targeted.run_id}/" in paths["targeted"] and "/targeted/" not in paths["full"]
    assert Path(paths["full"]).exists() and Path(paths["targeted"]).exists()
    # what a re-execution of the full run from sync_plan loads is still the full snapshot
    from entrasync_pipeline.io_manager import _MAGIC, read_frame

    with open(paths["full"], "rb") as stored_file:
        assert stored_file.read(len(_MAGIC)) == _MAGIC
        stored = read_frame(stored_file)
    assert len(stored) == len(full.output_for_node("universal_users")) > 1


def test_the_trace_names_the_scope_rule_that_left_a_target_out() -> None:
    from entrasync_pipeline.normalize import ScopeTest
    from entrasync_pipeline.plan import compute_plan
    from entrasync_pipeline.targeted import trace
    from entrasync_pipeline_tests.factories import graph_user, plan_options, universal, zammad_frame, zammad_user

    guest = graph_user("gail.guest", userType="Guest")
    users = universal(guest, exclude=(ScopeTest("userType", equals="Guest"),))
    zammad = zammad_frame(zammad_user(10, "gail.guest@contoso.example", guest["id"]))
    plan = compute_plan(users, zammad, plan_options())
    found = {guest["id"]: {"found": True, "upn": guest["userPrincipalName"], "groups": ["IT Support"]}}
    (story,) = trace([guest["id"]], found, users, zammad, plan)
    rule = "out of scope: scope.exclude[0] (userType equals 'Guest')"
    assert story["scope"] == f"member of IT Support, but {rule}"
    assert (story["decision"], story["reason"], story["zammad"]) == (
        "deactivate",
        rule,
        "#10 gail.guest@contoso.example",
    )
