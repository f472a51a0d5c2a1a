"""End to end through the Dagster job against the sandbox: msal over TLS, Graph and Zammad over HTTPS.

The promised example (README): a daily 02:00 sync finds three new hires in "IT Support", creates
three Zammad users with mapped fields and a non-null entra_key, updates five users whose department
changed, deactivates the one who left, audits every action and notifies the IT admins.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from entrasync_pipeline.audit import AuditFilter, AuditStore
from entrasync_pipeline.settings import load_settings
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config
from entrasync_pipeline_tests.tenant import Admin, Helpdesk, Runner, it_support_config, setup_attributes

pytestmark = pytest.mark.e2e


def test_the_promised_example(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any, webhook: Any, smtp: Any
) -> None:
    config = it_support_config(sandbox, tmp_path, notifications={"urls": [webhook.url, smtp.url]})
    setup_attributes(config, dagster_env)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success  # the state before the day of the example
    webhook.received.clear()
    smtp.messages.clear()

    group = sandbox.info["groups"]["IT Support"]
    objects = sandbox.state("graph")["objects"]
    people = [
        m
        for m in admin.members(group)
        if objects[m]["@odata.type"] == "#microsoft.graph.user"
        and objects[m].get("accountEnabled")
        and objects[m].get("mail")
        and "#EXT#" not in objects[m]["userPrincipalName"]
    ]
    hires = [admin.hire(f"new.hire{i}", group) for i in range(3)]
    for user_id in people[:5]:
        admin.patch(user_id, department="Service Desk")
    leaver = people[5]
    admin.remove(group, leaver)

    schedule = runner.defs.resolve_schedule_def("entrasync_daily_sync")
    at_two = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.timezone.utc)
    requests = schedule.evaluate_tick(
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at_two, repository_def=runner.defs.get_repository_def()
        )
    ).run_requests
    assert [r.partition_key for r in requests] == ["sandbox"]
    result = runner.run(requests[0].partition_key, tags=requests[0].tags)
    assert result.success
    counts = runner.counts(result)
    assert (counts["created"], counts["updated"], counts["deactivated"]) == (3, 5, 1)
    assert counts["failed"] == 0 and counts["dry_run"] is False

    zammad = {u.get("entra_key"): u for u in sandbox.state("zammad")["users"] if u.get("entra_key")}
    for key in hires:
        assert zammad[key]["department"] == "IT Support" and zammad[key]["phone"] == "+49 30 1234"
        assert zammad[key]["email"].startswith("new.hire") and zammad[key]["entrasync_profile"] == "sandbox"
    assert all(zammad[k]["department"] == "Service Desk" for k in people[:5])
    assert zammad[leaver]["active"] is False

    audit = AuditStore(load_settings(config).audit_url(dagster_env))
    rows = audit.query(AuditFilter(run_id=result.run_id))
    audit.close()
    done = sorted(r["action"] for r in rows if r["outcome"] == "done")
    assert done == ["create"] * 3 + ["deactivate"] + ["update"] * 5
    assert all(r["entra_key"] for r in rows if r["outcome"] == "done")

    assert len(webhook.received) == 1 and "3 created, 5 updated" in webhook.received[0]["message"]
    assert len(smtp.messages) == 1 and b"3 created" in smtp.messages[0].content


def test_a_second_run_writes_nothing(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = it_support_config(sandbox, tmp_path)
    setup_attributes(config, dagster_env)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.counts(runner.run())["created"] == 20
    writes_before = {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}
    second = runner.counts(runner.run())
    assert (second["created"], second["updated"], second["deactivated"], second["reactivated"]) == (0, 0, 0, 0)
    writes_after = {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}
    assert writes_after == writes_before


def test_a_run_calls_no_deprecated_dagster_api(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any, recwarn: pytest.WarningsRecorder
) -> None:
    """An admin read AssetExecutionContext.run_id deprecation warnings in every run's log."""
    config = it_support_config(sandbox, tmp_path)
    setup_attributes(config, dagster_env)
    assert Runner(config, ["sandbox"], instance).run().success
    package = str(Path(__file__).resolve().parents[1] / "entrasync_pipeline") + "/"
    ours = {
        f"{Path(w.filename).name}:{w.lineno}: {w.message}"
        for w in recwarn
        if issubclass(w.category, DeprecationWarning) and w.filename.startswith(package)
    }
    assert not ours


def _synced(sandbox: Sandbox, tmp_path: Path, env: dict[str, str], instance: Any) -> tuple[Runner, str]:
    """IT Support synced once; returns the runner and Anna Schmidt's Entra object id."""
    config = it_support_config(sandbox, tmp_path)
    setup_attributes(config, env)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success
    anna = next(
        i for i, o in sandbox.state("graph")["objects"].items() if o.get("mail") == "anna.schmidt@contoso.example"
    )
    return runner, anna


def test_a_leaver_who_returns_is_reactivated_not_duplicated(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    group = sandbox.info["groups"]["IT Support"]
    admin.remove(group, anna)
    assert runner.counts(runner.run())["deactivated"] == 1
    admin.add(group, anna)
    assert runner.counts(runner.run())["reactivated"] == 1
    annas = [u for u in sandbox.state("zammad")["users"] if u["email"] == "anna.schmidt@contoso.example"]
    assert len(annas) == 1 and annas[0]["active"] is True


def test_a_renamed_user_keeps_the_same_zammad_user(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    before = next(u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == anna)
    admin.patch(
        anna, mail="anna.berger@contoso.example", userPrincipalName="anna.berger@contoso.example", surname="Berger"
    )
    assert runner.counts(runner.run())["updated"] == 1
    after = next(u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == anna)
    assert after["id"] == before["id"]
    assert (after["email"], after["lastname"], after["login"]) == (
        "anna.berger@contoso.example",
        "Berger",
        "anna.berger@contoso.example",
    )


def test_the_lena_adoption_and_the_demo_quirks(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info)
    setup_attributes(config, dagster_env)
    result = Runner(config, ["sandbox"], instance).run()
    users = sandbox.state("zammad")["users"]
    lenas = [u for u in users if u["email"] == "lena.fischer@contoso.example"]
    assert len(lenas) == 1 and lenas[0]["login"] == "lena.fischer" and lenas[0]["entra_key"]
    emails = {u["email"] for u in users}
    assert "grace@partner.example" in emails and "olga.private@mailbox.example" in emails
    assert not any("#ext#" in (e or "") for e in emails)
    assert "tom.hartmann@contoso.example" not in emails  # disabled account
    plan = result.asset_materializations_for_node("sync_plan")[0].metadata
    assert plan["skip"].value == 2 and plan["conflict"].value == 0


def test_mass_deactivation_is_blocked_until_approved(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any, webhook: Any
) -> None:
    config = it_support_config(sandbox, tmp_path, notifications={"urls": [webhook.url]})
    setup_attributes(config, dagster_env)
    runner = Runner(config, ["sandbox"], instance)
    runner.run()
    users = _six_leave_it_support(sandbox, admin)
    webhook.received.clear()
    blocked = runner.run()
    assert not blocked.success
    checks = {e.check_name: e.passed for e in blocked.get_asset_check_evaluations()}
    assert checks["sync_plan_safety"] is False
    assert not blocked.asset_materializations_for_node("zammad_sync")
    assert all(u["active"] for u in sandbox.state("zammad")["users"] if u.get("entra_key") in users)
    assert webhook.received and "blocked" in webhook.received[0]["title"]
    too_few = runner.run(tags={"entrasync/approve-deactivations": "5"})
    assert not too_few.success
    approved = runner.run(tags={"entrasync/approve-deactivations": "6"})
    assert approved.success and runner.counts(approved)["deactivated"] == 6


def test_dry_run_from_run_config_writes_nothing(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = it_support_config(sandbox, tmp_path)
    setup_attributes(config, dagster_env)
    before = sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0)
    result = Runner(config, ["sandbox"], instance).run(
        run_config={"resources": {"run_options": {"config": {"dry_run": True}}}}
    )
    counts = Runner.counts(None, result)  # type: ignore[arg-type]
    assert counts["dry_run"] is True and counts["created"] == 20
    assert sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == before


def test_two_profiles_on_one_zammad_never_touch_each_others_users(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    groups = sandbox.info["groups"]
    config = write_config(
        tmp_path / "entrasync.yaml",
        sandbox.info,
        {
            "it": {"groups": [{"id": groups["IT Support"], "name": "IT Support"}]},
            "sales": {"groups": [{"id": groups["Sales"], "name": "Sales"}]},
        },
    )
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.steps import setup_zammad

    with ProfileRuntime("it", load_settings(config), dagster_env) as runtime:
        setup_zammad(runtime)
    runner = Runner(config, ["it", "sales"], instance)
    assert runner.run("it").success and runner.run("sales").success
    owners = {u["entrasync_profile"] for u in sandbox.state("zammad")["users"] if u.get("entra_key")}
    assert owners == {"it", "sales"}
    # Sales members leave Sales: only the sales profile may deactivate them; the IT profile never does.
    sales_people = [
        m
        for m in admin.members(groups["Sales"])
        if sandbox.state("graph")["objects"][m]["@odata.type"].endswith("user")
    ]
    for user_id in sales_people[:2]:
        admin.remove(groups["Sales"], user_id)
    assert runner.counts(runner.run("it"))["deactivated"] == 0
    assert runner.counts(runner.run("sales"))["deactivated"] == 2
    # A Sales person added to IT Support as well is a conflict for IT (owned by sales), not a takeover.
    admin.add(groups["IT Support"], sales_people[2])
    result = runner.run("it")
    plan = result.asset_materializations_for_node("sync_plan")[0].metadata
    assert plan["conflict"].value == 1
    owner = next(u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == sales_people[2])
    assert owner["entrasync_profile"] == "sales"


def _six_leave_it_support(sandbox: Sandbox, admin: Admin) -> list[str]:
    """Six users leave "IT Support": more than 10 % of its managed users, so the plan is held."""
    group = sandbox.info["groups"]["IT Support"]
    objects = sandbox.state("graph")["objects"]
    users = [m for m in admin.members(group) if objects[m]["@odata.type"].endswith("user")][:6]
    for user_id in users:
        admin.remove(group, user_id)
    return users


def _evaluate_failure_sensor(runner: Runner, config: Path, result: dg.ExecuteInProcessResult) -> None:
    from entrasync_pipeline.resources import EntrasyncResource

    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="entrasync_failure_notifications",
        dagster_instance=runner.instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
        resources={"entrasync": EntrasyncResource(config_path=str(config))},
    ).for_run_failure()
    runner.defs.resolve_sensor_def("entrasync_failure_notifications")(context)


def test_a_blocked_run_says_how_to_approve_in_dagster_terms_and_is_announced_once(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any, webhook: Any
) -> None:
    config = it_support_config(sandbox, tmp_path, notifications={"urls": [webhook.url]})
    setup_attributes(config, dagster_env)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success
    _six_leave_it_support(sandbox, admin)
    webhook.received.clear()
    blocked = runner.run(run_config={"resources": {"run_options": {"config": {"dry_run": True}}}})
    safety = next(e for e in blocked.get_asset_check_evaluations() if e.check_name == "sync_plan_safety")
    assert not safety.passed and "Held: 6 deactivations" in safety.description
    assert "entrasync/approve-deactivations=6" in safety.description
    assert "run_options: {config: {approve_deactivations: 6}}" in safety.description
    preview = blocked.asset_materializations_for_node("sync_plan")[0].metadata["preview"].value
    assert preview.splitlines()[2].startswith("| deactivate |")  # deactivations first
    _evaluate_failure_sensor(runner, config, blocked)
    assert [m["title"] for m in webhook.received] == ["[DRY RUN] entrasync sandbox: blocked by a safety rule"]


def test_an_approval_given_in_a_dry_run_is_audited_as_a_dry_run(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = it_support_config(sandbox, tmp_path)
    setup_attributes(config, dagster_env)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success
    users = _six_leave_it_support(sandbox, admin)
    result = runner.run(
        tags={"entrasync/approve-deactivations": "6"},
        run_config={"resources": {"run_options": {"config": {"dry_run": True}}}},
    )
    assert result.success and runner.counts(result)["deactivated"] == 6 and runner.counts(result)["dry_run"] is True
    audit = AuditStore(load_settings(config).audit_url(dagster_env))
    approvals = audit.query(AuditFilter(run_id=result.run_id, action="approval"))
    audit.close()
    assert [(a["dry_run"], a["outcome"]) for a in approvals] == [(True, "info")]
    assert all(u["active"] for u in sandbox.state("zammad")["users"] if u.get("entra_key") in users)


def test_a_failed_run_is_announced_by_the_failure_sensor(
    sandbox: Sandbox, tmp_path: Path, dagster_env: dict[str, str], instance: Any, webhook: Any
) -> None:
    config = it_support_config(sandbox, tmp_path, notifications={"urls": [webhook.url]})
    runner = Runner(config, ["sandbox"], instance)
    failed = runner.run()  # zammad-setup never ran: the plan refuses to write without entra_key
    assert not failed.success
    webhook.received.clear()
    _evaluate_failure_sensor(runner, config, failed)
    assert len(webhook.received) == 1 and "sync failed" in webhook.received[0]["title"]
    assert "zammad-setup" in webhook.received[0]["message"]


# --- who is in scope and who wins (issue 12) --------------------------------------------------------
def _plan_rows(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node("sync_plan")[0].metadata.items()}


def _audited(config: Path, env: dict[str, str], run_id: str) -> list[dict[str, Any]]:
    audit = AuditStore(load_settings(config).audit_url(env))
    try:
        return audit.query(AuditFilter(run_id=run_id))
    finally:
        audit.close()


def test_a_scope_rule_keeps_guests_out_and_deactivates_a_managed_member_who_becomes_one(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    group = sandbox.info["groups"]["IT Support"]
    guest = admin.hire("gail.guest", group)
    admin.patch(guest, userType="Guest")
    admin.patch(anna, userType="Guest")
    scoped = it_support_config(sandbox, tmp_path, scope={"exclude": [{"attribute": "userType", "equals": "Guest"}]})
    runner = Runner(scoped, ["sandbox"], instance)
    result = runner.run()
    assert result.success
    helpdesk = {u.get("entra_key"): u for u in sandbox.state("zammad")["users"]}
    grace = next(k for k, u in helpdesk.items() if u["email"] == "grace@partner.example")  # the seeded guest
    counts = runner.counts(result)
    assert (counts["created"], counts["deactivated"]) == (0, 2)
    assert helpdesk[anna]["active"] is False and helpdesk[grace]["active"] is False and guest not in helpdesk
    rule = "out of scope: scope.exclude[0] (userType equals 'Guest')"
    rows = {r["entra_key"]: r for r in _audited(scoped, dagster_env, result.run_id) if r["outcome"] != "started"}
    for key in (anna, grace):
        assert (rows[key]["action"], rows[key]["outcome"], rows[key]["reason"]) == ("deactivate", "done", rule)
    assert (rows[guest]["action"], rows[guest]["outcome"], rows[guest]["reason"]) == ("skip", "skipped", rule)
    assert runner.counts(runner.run())["deactivated"] == 0  # and then nothing more


def test_a_leaver_waits_out_the_grace_period_in_targeted_and_full_runs(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    _, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    config = it_support_config(sandbox, tmp_path, grace_days=7)
    runner = Runner(config, ["sandbox"], instance)
    admin.remove(sandbox.info["groups"]["IT Support"], anna)
    dry = runner.run(run_config={"resources": {"run_options": {"config": {"dry_run": True}}}})
    assert _plan_rows(dry)["grace"] == 1
    audit = AuditStore(load_settings(config).audit_url(dagster_env))
    assert audit.missing_since("sandbox") == {}  # a dry run keeps no first-missing time
    full = runner.run()
    assert runner.counts(full)["in_grace"] == 1 and runner.counts(full)["deactivated"] == 0
    since = audit.missing_since("sandbox")[anna]
    targeted = runner.targeted([anna])
    assert _plan_rows(targeted)["grace"] == 1 and audit.missing_since("sandbox") == {anna: since}
    assert Helpdesk(sandbox, None).user(anna)["active"] is True
    audit.update_missing("sandbox", {anna: since - dt.timedelta(days=7)}, decided=[anna])  # a week later
    later = runner.targeted([anna])
    assert runner.counts(later)["deactivated"] == 1
    assert Helpdesk(sandbox, None).user(anna)["active"] is False
    reason = next(r["reason"] for r in _audited(config, dagster_env, later.run_id) if r["outcome"] == "done")
    assert reason.startswith("no longer a member of the configured groups; missing since ")
    last = runner.run()
    assert runner.counts(last)["deactivated"] == 0 and audit.missing_since("sandbox") == {}
    audit.close()


def test_a_member_back_within_the_grace_period_is_untouched(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    _, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    runner = Runner(it_support_config(sandbox, tmp_path, grace_days=3), ["sandbox"], instance)
    group = sandbox.info["groups"]["IT Support"]
    admin.remove(group, anna)
    assert runner.counts(runner.run())["in_grace"] == 1
    admin.add(group, anna)
    writes = {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}
    back = runner.counts(runner.run())
    assert (back["in_grace"], back["reactivated"], back["updated"]) == (0, 0, 0)
    assert {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")} == writes


def test_an_opted_out_user_is_never_written_whatever_entra_says(
    sandbox: Sandbox, admin: Admin, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    helpdesk = Helpdesk(sandbox, http)
    helpdesk.edit(anna, entrasync_ignore=True, department="Kept by hand")
    admin.patch(anna, department="Service Desk")
    changed = runner.run()
    assert runner.counts(changed)["opted_out"] == 1 and runner.counts(changed)["updated"] == 0
    admin.remove(sandbox.info["groups"]["IT Support"], anna)
    left = runner.run()
    assert runner.counts(left)["opted_out"] == 1 and runner.counts(left)["deactivated"] == 0
    user = helpdesk.user(anna)
    assert (user["active"], user["department"]) == (True, "Kept by hand")
    rows = [r for r in _audited(runner.config, dagster_env, left.run_id) if r["entra_key"] == anna]
    assert [(r["action"], r["outcome"]) for r in rows] == [("opted_out", "skipped")]
    assert rows[0]["reason"].startswith("opted out in Zammad (entrasync_ignore is set)")


def test_phones_are_written_in_e164_once_and_a_number_that_is_none_is_kept_and_reported(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    config = it_support_config(sandbox, tmp_path, phones={"format": "e164", "default_region": "DE"})
    setup_attributes(config, dagster_env)
    runner = Runner(config, ["sandbox"], instance)
    group = sandbox.info["groups"]["IT Support"]
    hire = admin.hire("nina.nummer", group)
    admin.patch(hire, businessPhones=["030 1234567"], mobilePhone="ask reception")
    first = runner.run()
    assert first.success
    zammad = Helpdesk(sandbox, None).user(hire)
    assert (zammad["phone"], zammad["mobile"]) == ("+49301234567", "ask reception")
    normalized = first.asset_materializations_for_node("universal_users")[0].metadata
    assert normalized["phones_kept_as_typed"].value >= 1 and "ask reception" in normalized["phone_problems"].value
    synced = [u for u in sandbox.state("zammad")["users"] if u.get("entra_key")]
    assert any(u["phone"] and u["phone"].startswith("+49") and " " not in u["phone"] for u in synced)
    writes = {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}
    again = runner.counts(runner.run())
    assert (again["created"], again["updated"]) == (0, 0)
    assert {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")} == writes


def test_a_rehire_under_the_old_mail_is_relinked_to_the_same_zammad_user(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    """Deleted in Entra and created again with the same mail: the Zammad user follows the new object."""
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    before = Helpdesk(sandbox, None).user(anna)
    admin.delete(anna)
    assert runner.counts(runner.run())["deactivated"] == 1  # she left: deactivated as usual
    again = admin.hire("anna.schmidt", sandbox.info["groups"]["IT Support"])
    result = runner.targeted([again])  # as the change feed launches it for the new object
    assert runner.counts(result)["relinked"] == 1
    after = Helpdesk(sandbox, None).user(again)
    assert (after["id"], after["active"]) == (before["id"], True)
    assert not [u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == anna]
    rows = [r for r in _audited(runner.config, dagster_env, result.run_id) if r["outcome"] == "done"]
    assert [(r["action"], r["zammad_id"]) for r in rows] == [("relink", before["id"])]
    assert rows[0]["changes"]["entra_key"] == [anna, again] and rows[0]["reason"].startswith("relinked: Entra object")
    full = runner.counts(runner.run())
    assert (full["created"], full["updated"], full["relinked"], full["conflicts"]) == (0, 0, 0, 0)


def test_a_rehire_stays_a_conflict_while_the_old_object_exists_or_relinking_is_off(
    sandbox: Sandbox, admin: Admin, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    group = sandbox.info["groups"]["IT Support"]
    admin.remove(group, anna)
    admin.patch(anna, mail="anna.old@contoso.example", userPrincipalName="anna.old@contoso.example")  # lives on
    twin = admin.hire("anna.schmidt", group)
    counts = runner.counts(runner.run())
    assert (counts["relinked"], counts["conflicts"], counts["created"]) == (0, 1, 0)
    admin.delete(anna)
    it_support_config(sandbox, tmp_path, relink_deleted=False)  # the same file, rewritten
    assert runner.counts(runner.run())["relinked"] == 0
    assert Helpdesk(sandbox, None).user(anna)["active"] is True  # held by the conflict, as before
    it_support_config(sandbox, tmp_path)  # relink_deleted: true, the default
    assert runner.counts(runner.run())["relinked"] == 1 and Helpdesk(sandbox, None).user(twin)["active"]


def test_a_zammad_user_without_email_is_adopted_by_its_login_not_duplicated(
    sandbox: Sandbox, admin: Admin, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, _ = _synced(sandbox, tmp_path, dagster_env, instance)
    helpdesk = Helpdesk(sandbox, http)
    walk_in = helpdesk.create(login="Lara.Login@contoso.example", firstname="Lara", lastname="Login")
    hire = admin.hire("lara.login", sandbox.info["groups"]["IT Support"])
    result = runner.targeted([hire])
    assert runner.counts(result)["updated"] == 1 and runner.counts(result)["created"] == 0
    adopted = helpdesk.user(hire)
    assert (adopted["id"], adopted["email"]) == (walk_in, "lara.login@contoso.example")
    full = runner.counts(runner.run())
    assert (full["created"], full["updated"]) == (0, 0)


def test_hand_edits_in_zammad_are_reported_and_overwritten_or_kept_per_field(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    helpdesk = Helpdesk(sandbox, http)
    wrote = helpdesk.user(anna)["department"]
    helpdesk.edit(anna, department="Fixed by hand")
    overwritten = runner.run()
    assert (runner.counts(overwritten)["updated"], runner.counts(overwritten)["drift"]) == (1, 1)
    assert helpdesk.user(anna)["department"] == wrote
    row = next(r for r in _audited(runner.config, dagster_env, overwritten.run_id) if r["outcome"] == "done")
    assert row["changes"]["department"] == ["Fixed by hand", wrote]
    assert "changed by hand in Zammad since entrasync wrote it: department overwritten (drift: entra)" in row["reason"]

    it_support_config(sandbox, tmp_path, drift={"fields": {"department": "zammad"}})  # the runner's file
    helpdesk.edit(anna, department="Fixed by hand")
    kept = runner.run()
    skipped_before = runner.counts(overwritten)["skipped"]  # the tenant's members without a usable email
    assert (runner.counts(kept)["updated"], runner.counts(kept)["drift"]) == (0, 1)
    assert runner.counts(kept)["skipped"] == skipped_before + 1
    assert helpdesk.user(anna)["department"] == "Fixed by hand"
    writes = {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")}
    assert runner.counts(runner.run())["updated"] == 0  # kept, run after run, without a write
    assert {k: v for k, v in sandbox.stats("zammad")["requests"].items() if not k.startswith("GET")} == writes


def test_a_member_deactivated_by_hand_stays_deactivated_unless_configured(
    sandbox: Sandbox, http: Any, tmp_path: Path, dagster_env: dict[str, str], instance: Any
) -> None:
    runner, anna = _synced(sandbox, tmp_path, dagster_env, instance)
    helpdesk = Helpdesk(sandbox, http)
    helpdesk.edit(anna, active=False)  # a compromised account, locked by the helpdesk
    held = runner.run()
    assert (runner.counts(held)["reactivated"], runner.counts(held)["drift"]) == (0, 1)
    assert helpdesk.user(anna)["active"] is False
    rows = [r for r in _audited(runner.config, dagster_env, held.run_id) if r["entra_key"] == anna]
    assert [(r["action"], r["outcome"]) for r in rows] == [("skip", "skipped")]
    assert "deactivated; kept inactive (drift.manual_deactivation: keep)" in rows[0]["reason"]
    it_support_config(sandbox, tmp_path, drift={"manual_deactivation": "reactivate"})
    undone = runner.run()
    assert runner.counts(undone)["reactivated"] == 1 and helpdesk.user(anna)["active"] is True
