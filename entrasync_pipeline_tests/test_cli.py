"""The ``entrasync`` command as an admin runs it: subprocesses, real config, real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config

REPO = Path(__file__).resolve().parents[1]


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``entrasync ARGS`` running in the background (default signal handling, pipes for its output)."""
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ENTRA", "ZAMMAD"))}, **env}
    return subprocess.Popen(
        [sys.executable, "-m", "entrasync_pipeline.cli", *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def entrasync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ENTRA", "ZAMMAD"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "entrasync_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=180,
        cwd=REPO,
    )


@pytest.fixture
def cli_env(sandbox: Sandbox, environ: dict[str, str], config_path: Path) -> dict[str, str]:
    return {**environ, "ENTRASYNC_CONFIG": str(config_path)}


def test_every_command_has_help_with_an_example() -> None:
    for command in (
        ["plan"],
        ["sync"],
        ["status"],
        ["audit"],
        ["zammad-setup"],
        ["sandbox", "serve"],
        ["config-reference"],
    ):
        result = entrasync(*command, "--help")
        assert result.returncode == 0 and "Example:" in result.stdout, command


def test_version() -> None:
    result = entrasync("--version")
    assert result.returncode == 0 and result.stdout.startswith("entrasync ")


def test_setup_plan_sync_and_audit(cli_env: dict[str, str], sandbox: Sandbox) -> None:
    setup = entrasync("zammad-setup", env=cli_env)
    assert (
        setup.returncode == 0 and "created entra_key" in setup.stdout and "sandbox: entra_key: created" in setup.stdout
    )
    again = entrasync("zammad-setup", env=cli_env).stdout
    assert "every attribute already present" in again and "sandbox: entrasync_ignore: present" in again

    plan = entrasync("plan", "--json", env=cli_env)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] is True and planned["created"] == 54 and planned["updated"] == 1
    assert sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 0

    sync = entrasync("sync", "--json", env=cli_env)
    assert sync.returncode == 0, sync.stderr
    result = json.loads(sync.stdout)
    assert {k: result[k] for k in ("created", "updated", "deactivated", "failed", "blocked")} == {
        "created": 54,
        "updated": 1,
        "deactivated": 0,
        "failed": 0,
        "blocked": False,
    }
    assert set(result) >= {
        "run_id",
        "dry_run",
        "blocked",
        "created",
        "updated",
        "deactivated",
        "reactivated",
        "unchanged",
        "skipped",
        "conflicts",
        "failed",
    }
    assert all(isinstance(result[k], int) for k in ("created", "updated", "unchanged", "skipped", "conflicts"))

    again = json.loads(entrasync("sync", "--json", env=cli_env).stdout)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 55)

    audit = entrasync("audit", "--run", result["run_id"], "--format", "json", env=cli_env)
    rows = json.loads(audit.stdout)
    assert len([r for r in rows if r["outcome"] == "done"]) == 55
    csv_out = entrasync("audit", "--action", "create", "--format", "csv", env=cli_env).stdout
    import csv
    import io

    exported = list(csv.DictReader(io.StringIO(csv_out)))
    assert csv_out.startswith("seq,ts,run_id")
    # the plan's dry run ("would"), then the sync: each write's intent ("started") and outcome ("done")
    assert sorted({r["outcome"] for r in exported}) == ["done", "started", "would"]
    assert len([r for r in exported if r["outcome"] == "done"]) == 54
    table = entrasync("audit", "--user", "anna.schmidt@contoso.example", env=cli_env)
    assert table.returncode == 0 and "anna.schmidt" in table.stdout


def test_a_blocked_sync_exits_2_and_approval_lets_it_through(
    cli_env: dict[str, str], sandbox: Sandbox, tmp_path: Path, http
) -> None:
    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    assert entrasync("sync", env=cli_env).returncode == 0
    token = sandbox.admin_token()
    sales = sandbox.info["groups"]["Sales"]
    members = [
        m
        for m in sandbox.state("graph")["groups"][sales]
        if sandbox.state("graph")["objects"][m]["@odata.type"].endswith("user")
    ]
    for member in members[:6]:
        http.delete(
            f"{sandbox.info['graph_url']}/v1.0/groups/{sales}/members/{member}/$ref",
            headers={"Authorization": f"Bearer {token}"},
        )
    blocked = entrasync("sync", "--json", env=cli_env)
    assert blocked.returncode == 2
    assert json.loads(blocked.stdout)["blocked"] is True and "approve-deactivations 6" in blocked.stdout
    approved = entrasync("sync", "--json", "--approve-deactivations", "6", env=cli_env)
    assert approved.returncode == 0 and json.loads(approved.stdout)["deactivated"] == 6
    rows = json.loads(entrasync("audit", "--action", "approval", "--format", "json", env=cli_env).stdout)
    assert rows and "up to 6" in rows[0]["reason"]


def test_a_sync_without_the_attributes_fails_with_an_actionable_message(cli_env: dict[str, str]) -> None:
    result = entrasync("sync", "--json", env=cli_env)
    assert result.returncode == 1
    assert "entrasync zammad-setup" in json.loads(result.stdout)["error"]


def test_a_plan_before_zammad_setup_is_held_like_a_missing_field(cli_env: dict[str, str], sandbox: Sandbox) -> None:
    """Found by trying it as an admin: ``plan`` exited 0 on a Zammad where zammad-setup never ran, and
    ``sync`` printed a traceback, then "plan: nothing to change" under a plan of 54 creates."""
    plan = entrasync("plan", "--json", env=cli_env)
    assert plan.returncode == 1, plan.stdout[-2000:]
    held = json.loads(plan.stdout)
    assert held["status"] == "failed" and held["plan"]["create"] == 54
    for name in ("entra_key", "entra_object_type", "entrasync_profile", "entrasync_ignore", "entrasync zammad-setup"):
        assert name in held["error"], name

    sync = entrasync("sync", env=cli_env)
    assert sync.returncode == 1
    assert "Traceback" not in sync.stderr + sync.stdout and "MissingZammadAttributes" not in sync.stderr + sync.stdout
    assert "nothing to change" not in sync.stdout
    assert "NOTHING WRITTEN (planned: 54 create, 1 update)" in sync.stdout
    assert "nothing written: Zammad lacks" in " ".join(sync.stdout.split())
    assert not any(k.startswith(("POST", "PUT")) for k in sandbox.stats("zammad")["requests"])


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  p:\n    entra: {tenant_id: common, client_id: x}\n")
    result = entrasync("plan", "--config", str(bad))
    assert result.returncode == 1 and "profiles.p.entra.tenant_id" in result.stderr


def test_multi_profile_json_is_a_list(sandbox: Sandbox, environ: dict[str, str], tmp_path: Path) -> None:
    groups = sandbox.info["groups"]
    config = write_config(
        tmp_path / "two.yaml",
        sandbox.info,
        {"it": {"groups": [{"id": groups["IT Support"]}]}, "sales": {"groups": [{"id": groups["Sales"]}]}},
    )
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    assert entrasync("zammad-setup", "--profile", "it", env=env).returncode == 0
    runs = json.loads(entrasync("plan", "--json", env=env).stdout)
    assert [r["profile"] for r in runs] == ["it", "sales"]
    one = json.loads(entrasync("plan", "--json", "--profile", "sales", env=env).stdout)
    assert one["profile"] == "sales"


def test_the_config_reference_is_current() -> None:
    generated = entrasync("config-reference").stdout
    assert (REPO / "docs" / "configuration.md").read_text() == generated, (
        "docs/configuration.md is stale: run 'entrasync config-reference > docs/configuration.md'"
    )


def test_progress_shows_on_a_terminal_only(cli_env: dict[str, str]) -> None:
    import pty

    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    primary, secondary = pty.openpty()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTRA", "ZAMMAD"))},
        **cli_env,
        "COLUMNS": "120",
        "TERM": "xterm",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "entrasync_pipeline.cli", "sync"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
        timeout=180,
        cwd=REPO,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.returncode == 0
    assert b"writing" in b"".join(chunks)  # the bar went to the terminal
    assert b"writing" not in proc.stdout  # and never into piped output


# --- one orchestration path ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["sync", "--approve-deactivations", "-1"],
        ["sync", "--approve-deactivations", "six"],
        ["sync", "--bogus"],
        ["audit", "--format", "xml"],
    ],
    ids=["negative-approval", "non-numeric-approval", "unknown-flag", "unknown-format"],
)
def test_usage_errors_exit_64_so_that_2_means_only_blocked(args: list[str], cli_env: dict[str, str]) -> None:
    result = entrasync(*args, env=cli_env)
    assert result.returncode == 64, result.stderr


def test_a_cli_run_is_a_dagster_run_on_dagster_home(cli_env: dict[str, str]) -> None:
    import dagster as dg

    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    result = json.loads(entrasync("plan", "--json", env=cli_env).stdout)
    os.environ["DAGSTER_HOME"], saved = cli_env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_run_by_id(result["run_id"])
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags["entrasync/trigger"] == "cli" and run.tags["dagster/partition"] == "sandbox"
            record = instance.get_latest_materialization_event(dg.AssetKey("zammad_sync"))
            assert record is not None and record.run_id == result["run_id"]
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.__setitem__("DAGSTER_HOME", saved)


def test_json_changes_name_every_decision_with_its_fields(cli_env: dict[str, str]) -> None:
    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    planned = json.loads(entrasync("plan", "--json", env=cli_env).stdout)
    changes = planned["changes"]
    assert len(changes) == planned["created"] + planned["updated"] + planned["skipped"]
    update = next(c for c in changes if c["action"] == "update")
    assert update["zammad_id"] and update["fields"]["entra_key"]["before"] is None
    assert set(update) == {"action", "entra_key", "zammad_id", "email", "fields", "reason"}
    assert all(set(f) == {"before", "after"} for c in changes for f in c["fields"].values())


def test_no_dry_run_overrides_a_dry_run_config_file(sandbox: Sandbox, environ: dict[str, str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "dry.yaml", sandbox.info, dry_run=True)
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    assert entrasync("zammad-setup", env=env).returncode == 0
    dry = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert dry["dry_run"] is True and sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 0
    real = json.loads(entrasync("sync", "--json", "--no-dry-run", env=env).stdout)
    assert real["dry_run"] is False and real["created"] == 54


def test_without_an_audit_store_nothing_runs_and_nothing_lands_in_the_current_directory(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "noaudit.yaml", sandbox.info, audit={})
    env = {k: v for k, v in {**environ, "ENTRASYNC_CONFIG": str(config)}.items() if k != "DAGSTER_HOME"}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for command in (["audit"], ["plan"], ["sync"]):
        result = subprocess.run(
            [sys.executable, "-m", "entrasync_pipeline.cli", *command],
            capture_output=True,
            text=True,
            env={**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, **env},
            cwd=cwd,
            timeout=120,
        )
        assert result.returncode == 1 and "audit.url" in result.stderr and "DAGSTER_HOME" in result.stderr, command
    assert list(cwd.iterdir()) == []


def _final_rows_per_attempt(env: dict[str, str]) -> list[dict[str, object]]:
    rows = json.loads(entrasync("audit", "--format", "json", env=env).stdout)
    finals: dict[str, int] = {}
    for row in rows:
        if row["attempt_id"] and row["outcome"] != "started":
            finals[row["attempt_id"]] = finals.get(row["attempt_id"], 0) + 1
    assert all(n == 1 for n in finals.values())
    return rows


def test_two_syncs_of_one_profile_at_once_run_one_after_the_other(cli_env: dict[str, str], sandbox: Sandbox) -> None:
    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    sandbox.faults("zammad", {"route": "*", "latency_ms": [20, 20]})  # a first run long enough to overlap
    procs = [_spawn(cli_env, "sync", "--json") for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outputs]
    results = [json.loads(o[0]) for o in outputs]
    assert sorted(r["created"] for r in results) == [0, 54]  # the second saw the first's work, never duplicated it
    assert any("is being synced by run" in o[1] for o in outputs)  # and said why it waited
    rows = _final_rows_per_attempt(cli_env)
    assert not [r for r in rows if r["outcome"] == "interrupted"]
    assert sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 54


def test_a_second_sync_gives_up_after_the_wait_naming_the_holder(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    from entrasync_pipeline.lease import Lease, LeaseOptions
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.settings import load_settings

    config = write_config(tmp_path / "lock.yaml", sandbox.info, lock={"wait_s": 1, "ttl_s": 60})
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    with ProfileRuntime("sandbox", load_settings(config), environ) as runtime:
        Lease(runtime.audit.engine, "sandbox", "run-on-another-host", LeaseOptions(60, 0)).acquire()
        result = entrasync("sync", "--json", env=env)
    assert result.returncode == 1
    assert "profile sandbox is being synced by run run-on-another-host" in json.loads(result.stdout)["error"]
    assert sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 0


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)], ids=["sigint", "sigterm"])
def test_ctrl_c_ends_the_run_frees_the_profile_and_the_next_run_converges(
    cli_env: dict[str, str], sandbox: Sandbox, signum: int, code: int
) -> None:
    """A Ctrl-C (or a SIGTERM) during the writes: the exit code says which signal, as shells expect,
    and the summary counts the writes the audit recorded, not zero (found by trying it as an admin)."""
    import time

    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "latency_ms": [300, 300]})
    proc = _spawn(cli_env, "sync", "--json")
    deadline = time.monotonic() + 120
    # more POSTs than workers (8): the first ones have answered and their outcomes are recorded
    while sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    summary = json.loads(out)
    assert proc.returncode == code and "interrupted" in summary["error"]
    done = json.loads(entrasync("audit", "--run", summary["run_id"], "--format", "json", env=cli_env).stdout)
    created = [r for r in done if r["action"] == "create" and r["outcome"] == "done"]
    assert summary["created"] == len(created) > 0 and summary["dry_run"] is False
    # every create that landed, the ones in the workers' hands at the signal too, has its audit row
    landed = sum(1 for u in sandbox.state("zammad")["users"] if u.get("entra_key"))  # creates and the adoption
    linked = [r for r in done if r["action"] in ("create", "update") and r["outcome"] == "done"]
    assert len(linked) == landed
    sandbox.faults("zammad")
    started = time.monotonic()
    again = entrasync("sync", "--json", env=cli_env)
    assert again.returncode == 0 and time.monotonic() - started < 60  # the profile was free at once
    rows = _final_rows_per_attempt(cli_env)
    assert {r["run_id"] for r in rows if r["outcome"] == "interrupted"} == {json.loads(out)["run_id"]}
    keyed = [u["entra_key"] for u in sandbox.state("zammad")["users"] if u.get("entra_key")]
    assert len(keyed) == len(set(keyed)) == 55


def test_one_ctrl_c_during_the_read_ends_the_run_without_a_retry(cli_env: dict[str, str], sandbox: Sandbox) -> None:
    """Dagster retries an interrupted step that has a retry policy; a Ctrl-C must end the run instead
    (found by trying it as an admin: the read started again and the sync wrote after the Ctrl-C)."""
    import signal
    import time

    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    sandbox.faults("graph", {"route": "GET /v1.0/groups/{id}/members", "latency_ms": [4000, 4000]})
    for which in ("graph", "zammad"):
        sandbox.control("DELETE", which, "stats")
    proc = _spawn(cli_env, "sync", "--json")
    deadline = time.monotonic() + 60
    while (
        not sandbox.stats("graph")["requests"].get("POST /{tenant}/oauth2/v2.0/token") and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    time.sleep(1.0)  # the first members page is on its way (4 s)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in json.loads(out)["error"], out
    assert time.monotonic() - started < 20  # no step retry (15 s and more each)
    assert sandbox.stats("graph")["requests"].get("GET /v1.0/groups/{id}/members", 0) <= 1
    assert not any(k.startswith(("POST", "PUT")) for k in sandbox.stats("zammad")["requests"])


def test_a_request_graph_calls_wrong_fails_at_once_with_graphs_words(
    environ: dict[str, str], sandbox: Sandbox, tmp_path: Path
) -> None:
    """A scope rule on an attribute Graph does not have (its case wrong): Graph answers 400 on every
    try, so the run fails without step retries, and the error is Graph's, not "max retries"."""
    groups = [{"id": g, "name": n} for n, g in sandbox.info["groups"].items()]
    rule = {"exclude": [{"attribute": "usertype", "equals": "Guest"}]}
    config = write_config(tmp_path / "scope.yaml", sandbox.info, {"sandbox": {"groups": groups, "scope": rule}})
    env = {**environ, "ENTRASYNC_CONFIG": str(config)}
    sandbox.control("DELETE", "graph", "stats")
    result = entrasync("plan", "--json", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert "GraphResponseError" in error and "usertype" in error and "RetryRequested" not in error
    assert sandbox.stats("graph")["requests"]["POST /{tenant}/oauth2/v2.0/token"] == 1  # one attempt


def _graph_id(sandbox: Sandbox, **match: str) -> str:
    objects = sandbox.state("graph")["objects"].items()
    return next(i for i, o in objects if all(o.get(k) == v for k, v in match.items()))


def test_provision_on_demand_tells_each_step_for_each_user(cli_env: dict[str, str], sandbox: Sandbox) -> None:
    assert entrasync("zammad-setup", env=cli_env).returncode == 0
    anna = _graph_id(sandbox, mail="anna.schmidt@contoso.example")
    plan = entrasync("plan", "--user", "anna.schmidt@contoso.example", env=cli_env)
    assert plan.returncode == 0, plan.stderr
    for step in ("read", "scope", "zammad", "decision", "write"):
        assert f"  {step} " in plan.stdout, step
    assert anna in plan.stdout and "in scope: member of IT Support" in plan.stdout and "create" in plan.stdout
    assert sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 0  # plan writes nothing

    synced = entrasync("sync", "--user", anna, "--user", "nobody@contoso.example", "--json", env=cli_env)
    assert synced.returncode == 1, synced.stderr[-3000:]  # one name matched nobody: said, and the exit code says it
    summary = json.loads(synced.stdout)
    assert (
        summary["scope"] == "targeted"
        and summary["created"] == 1
        and summary["unresolved"] == ["nobody@contoso.example"]
    )
    (story,) = summary["targets"]
    assert story["entra_key"] == anna and story["decision"] == "create" and story["write"] == "create done"
    zammad = [u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == anna]
    assert len(zammad) == 1 and sandbox.stats("zammad")["requests"].get("GET /api/v1/users", 0) == 0

    outsider = _graph_id(sandbox, department="Finance")
    out = entrasync("plan", "--user", outsider, "--json", env=cli_env)
    assert json.loads(out.stdout)["targets"][0]["scope"] == "out of scope: not a member of any configured group"


def test_a_user_lookup_that_graph_refuses_is_a_clear_error_not_a_traceback(
    cli_env: dict[str, str], sandbox: Sandbox
) -> None:
    sandbox.faults("graph", {"route": "GET /v1.0/users/{id}", "rate": 1.0, "statuses": [503]})
    result = entrasync("plan", "--user", "jane.doe@contoso.example", env=cli_env)
    assert result.returncode == 1
    assert "could not look up --user" in result.stderr and "Traceback" not in result.stderr


def test_scope_grace_opt_out_and_hand_edits_through_the_cli(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, http
) -> None:
    """Guests kept out by a rule, a leaver in the grace period, a user opted out in Zammad and a hand
    edit overwritten, as ``plan --json`` and ``sync --json`` report them."""
    from entrasync_pipeline_tests.tenant import Admin, Helpdesk

    groups = [{"id": g, "name": n} for n, g in sandbox.info["groups"].items()]
    scoped = {"groups": groups, "scope": {"exclude": [{"attribute": "userType", "equals": "Guest"}]}, "grace_days": 7}
    env = {
        **environ,
        "ENTRASYNC_CONFIG": str(write_config(tmp_path / "scoped.yaml", sandbox.info, {"sandbox": scoped})),
    }
    assert "entrasync_ignore" in entrasync("zammad-setup", env=env).stdout
    first = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert first["created"] > 0 and first["in_grace"] == 0 and first["opted_out"] == 0
    emails = {u["email"] for u in sandbox.state("zammad")["users"]}
    assert "grace@partner.example" not in emails  # the seeded guest

    graph = sandbox.state("graph")
    memberships = {
        m: [g for g, ms in graph["groups"].items() if m in ms] for ms in graph["groups"].values() for m in ms
    }
    synced = {u["entra_key"] for u in sandbox.state("zammad")["users"] if u.get("entra_key")}
    leaver, kept, edited = [m for m, gs in memberships.items() if m in synced and len(gs) == 1][:3]
    Admin(sandbox, http).remove(memberships[leaver][0], leaver)
    Helpdesk(sandbox, http).edit(kept, entrasync_ignore=True)
    Helpdesk(sandbox, http).edit(edited, department="Changed by hand")

    plan = entrasync("plan", "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert (planned["in_grace"], planned["opted_out"], planned["deactivated"], planned["drift"]) == (1, 1, 0, 1)
    decided = {c["entra_key"]: c for c in planned["changes"]}
    assert decided[leaver]["action"] == "grace" and "in the grace period since" in decided[leaver]["reason"]
    assert decided[kept]["action"] == "opted_out" and "entrasync_ignore" in decided[kept]["reason"]
    assert decided[edited]["fields"]["department"]["before"] == "Changed by hand"
    assert "department overwritten (drift: entra)" in decided[edited]["reason"]
    assert any(
        c["action"] == "skip" and c["reason"] == "out of scope: scope.exclude[0] (userType equals 'Guest')"
        for c in planned["changes"]
    )
    again = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert (again["in_grace"], again["opted_out"], again["deactivated"], again["updated"], again["drift"]) == (
        1,
        1,
        0,
        1,
        1,
    )
    leaver_now = next(u for u in sandbox.state("zammad")["users"] if u.get("entra_key") == leaver)
    assert leaver_now["active"] is True
