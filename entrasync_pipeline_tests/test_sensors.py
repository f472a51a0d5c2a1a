"""The change-feed sensor: targeted runs for membership changes, quiet otherwise, full runs after resets,
bursts merged while a run is busy, faults survived."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from entrasync_pipeline.definitions import build_definitions
from entrasync_pipeline.settings import ScheduleSettings
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config


@pytest.fixture
def sensor_env(sandbox: Sandbox, tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return write_config(
        tmp_path / "entrasync.yaml",
        sandbox.info,
        {"sandbox": {"groups": [{"id": sandbox.info["groups"]["Sales"], "name": "Sales"}]}},
    )


@pytest.fixture(autouse=True)
def instance() -> Any:
    with dg.instance_for_test() as inst:
        yield inst


def _tick(config: Path, cursor: str | None, instance: dg.DagsterInstance | None = None) -> dg.SensorResult:
    defs = build_definitions(["sandbox"], ScheduleSettings(), config_path=str(config))
    sensor = defs.resolve_sensor_def("entrasync_membership_delta")
    from entrasync_pipeline.resources import EntrasyncResource

    with dg.instance_for_test() as fresh:
        with dg.build_sensor_context(
            cursor=cursor,
            instance=instance or fresh,
            resources={"entrasync": EntrasyncResource(config_path=str(config))},
            repository_def=defs.get_repository_def(),
        ) as context:
            return sensor(context)


def _busy_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    """A run of the profile that is still running, as the daemon would have one."""
    run = dg.DagsterRun(
        job_name="entrasync_sync_job",
        run_id="busy-run",
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": "sandbox"},
    )
    instance.add_run(run)
    return run


def _targets(request: dg.RunRequest) -> list[str]:
    return request.run_config["resources"]["run_options"]["config"]["targets"]


def _add_finance_user(sandbox: Sandbox, http: Any) -> str:
    finance = next(i for i, o in sandbox.state("graph")["objects"].items() if o.get("department") == "Finance")
    http.post(
        f"{sandbox.info['graph_url']}/v1.0/groups/{sandbox.info['groups']['Sales']}/members/$ref",
        headers={"Authorization": f"Bearer {sandbox.admin_token()}"},
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance}"},
    )
    return finance


def _add_other_user(sandbox: Sandbox, http: Any) -> str:
    sales = set(sandbox.state("graph")["groups"][sandbox.info["groups"]["Sales"]])
    other = next(
        i
        for i, o in sandbox.state("graph")["objects"].items()
        if o.get("@odata.type") == "#microsoft.graph.user" and i not in sales and o.get("department") != "Finance"
    )
    http.post(
        f"{sandbox.info['graph_url']}/v1.0/groups/{sandbox.info['groups']['Sales']}/members/$ref",
        headers={"Authorization": f"Bearer {sandbox.admin_token()}"},
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{other}"},
    )
    return other


def test_first_tick_takes_a_baseline_and_launches_nothing(sensor_env: Path) -> None:
    result = _tick(sensor_env, None)
    assert not result.run_requests and "baseline" in (result.skip_reason.skip_message or "")
    assert "sandbox" in json.loads(result.cursor)


def test_quiet_without_changes_and_one_run_per_change(sandbox: Sandbox, http: Any, sensor_env: Path) -> None:
    baseline = _tick(sensor_env, None).cursor
    quiet = _tick(sensor_env, baseline)
    assert not quiet.run_requests and "0 users changed" in quiet.skip_reason.skip_message
    finance = _add_finance_user(sandbox, http)
    fired = _tick(sensor_env, quiet.cursor)
    assert len(fired.run_requests) == 1
    request = fired.run_requests[0]
    assert request.partition_key == "sandbox" and request.tags["entrasync/trigger"] == "sensor"
    assert request.tags["entrasync/scope"] == "targeted" and request.tags["entrasync/delta"] == "1 users"
    assert _targets(request) == [finance]
    again = _tick(sensor_env, fired.cursor)
    assert not again.run_requests
    replay = _tick(sensor_env, quiet.cursor)  # a re-evaluated tick: same run key, Dagster dedupes it
    assert replay.run_requests[0].run_key == request.run_key


def test_expired_delta_state_triggers_a_full_sync(sandbox: Sandbox, sensor_env: Path) -> None:
    baseline = _tick(sensor_env, None).cursor
    sandbox.control("POST", "graph", "delta/expire")
    result = _tick(sensor_env, baseline)
    assert (
        len(result.run_requests) == 1
        and result.run_requests[0].tags["entrasync/trigger"] == "sensor"
        and result.run_requests[0].tags["entrasync/scope"] == "full"
        and not result.run_requests[0].run_config
    )
    assert json.loads(result.cursor)["sandbox"] != json.loads(baseline)["sandbox"]


def test_a_410_reset_triggers_a_full_sync(sandbox: Sandbox, sensor_env: Path) -> None:
    baseline = _tick(sensor_env, None).cursor
    sandbox.control("POST", "graph", "delta/reset")
    result = _tick(sensor_env, baseline)
    assert (
        result.run_requests
        and result.run_requests[0].tags["entrasync/trigger"] == "sensor"
        and result.run_requests[0].tags["entrasync/scope"] == "full"
    )


@pytest.mark.parametrize("route", ["GET /v1.0/groups/delta", "GET /v1.0/users/delta"])
def test_faults_keep_the_cursor_and_launch_nothing(sandbox: Sandbox, http: Any, sensor_env: Path, route: str) -> None:
    baseline = _tick(sensor_env, None).cursor
    _add_finance_user(sandbox, http)
    sandbox.faults("graph", {"route": route, "rate": 1.0, "statuses": [503]})
    failed = _tick(sensor_env, baseline)
    assert not failed.run_requests and "will retry" in failed.skip_reason.skip_message
    assert failed.cursor == baseline
    sandbox.control("DELETE", "graph", "faults")
    assert len(_tick(sensor_env, failed.cursor).run_requests) == 1


def test_a_busy_profile_keeps_the_ids_and_merges_the_burst_into_one_run(
    sandbox: Sandbox, http: Any, sensor_env: Path, instance: dg.DagsterInstance
) -> None:
    baseline = _tick(sensor_env, None, instance).cursor
    busy = _busy_run(instance)
    first = _add_finance_user(sandbox, http)
    held = _tick(sensor_env, baseline, instance)
    assert not held.run_requests and "1 ids wait" in held.skip_reason.skip_message
    second = _add_other_user(sandbox, http)
    still = _tick(sensor_env, held.cursor, instance)
    assert not still.run_requests and "2 ids wait" in still.skip_reason.skip_message
    instance.report_run_failed(busy)
    merged = _tick(sensor_env, still.cursor, instance)
    assert len(merged.run_requests) == 1 and _targets(merged.run_requests[0]) == sorted([first, second])
    assert json.loads(merged.cursor)["sandbox"]["pending"] == []


def test_a_change_bigger_than_the_limit_asks_for_a_full_run(
    sandbox: Sandbox, http: Any, tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    config = write_config(
        tmp_path / "small.yaml",
        sandbox.info,
        {"sandbox": {"groups": [{"id": sandbox.info["groups"]["Sales"], "name": "Sales"}]}},
        schedule={"targeted_max_users": 1},
    )
    baseline = _tick(config, None).cursor
    _add_finance_user(sandbox, http)
    _add_other_user(sandbox, http)
    result = _tick(config, baseline)
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["entrasync/scope"] == "full"


def test_the_schedule_requests_one_run_per_profile_at_its_cron(tmp_path: Path) -> None:
    schedule_settings = ScheduleSettings(cron="30 2 * * *", timezone="Europe/Berlin")
    defs = build_definitions(["it", "sales"], schedule_settings, config_path=str(tmp_path / "none.yaml"))
    schedule = defs.resolve_schedule_def("entrasync_daily_sync")
    assert schedule.cron_schedule == "30 2 * * *" and schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    import datetime as dt

    when = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.timezone.utc)
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    assert [r.partition_key for r in requests] == ["it", "sales"]
    assert all(r.tags["entrasync/trigger"] == "schedule" for r in requests)
    assert requests[0].run_key == f"it:{when.isoformat()}"
    assert all(not r.run_config for r in requests)  # dry_run comes from the config file, not the schedule


@pytest.fixture
def transitive_env(sandbox: Sandbox, tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    groups = [{"id": sandbox.info["groups"]["IT Support"], "name": "IT Support"}]
    return write_config(tmp_path / "t.yaml", sandbox.info, {"sandbox": {"groups": groups, "membership": "transitive"}})


def _graph_write(sandbox: Sandbox, http: Any, method: str, path: str, body: Any = None) -> None:
    response = http.request(
        method,
        f"{sandbox.info['graph_url']}/v1.0{path}",
        json=body,
        headers={"Authorization": f"Bearer {sandbox.admin_token()}"},
    )
    assert response.status_code < 300, response.text


def test_transitive_profiles_watch_nested_groups_and_a_nested_change_names_its_users(
    sandbox: Sandbox, http: Any, transitive_env: Path
) -> None:
    state = sandbox.state("graph")
    it_support, tier2 = sandbox.info["groups"]["IT Support"], sandbox.info["groups"]["IT Support Tier 2"]
    baseline = _tick(transitive_env, None)
    watched = {g for chunk in json.loads(baseline.cursor)["sandbox"]["groups"] for g in chunk[1:]}
    assert watched == {it_support, tier2}
    finance = next(i for i, o in state["objects"].items() if o.get("department") == "Finance")
    _graph_write(
        sandbox,
        http,
        "POST",
        f"/groups/{tier2}/members/$ref",
        {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{finance}"},
    )
    joined = _tick(transitive_env, baseline.cursor)
    assert _targets(joined.run_requests[0]) == [finance]  # a member of the nested group is in scope
    _graph_write(sandbox, http, "DELETE", f"/groups/{it_support}/members/{tier2}/$ref")
    moved = _tick(transitive_env, joined.cursor)
    tier2_users = {m for m in sandbox.state("graph")["groups"][tier2]}
    assert set(_targets(moved.run_requests[0])) == tier2_users  # the whole nested group left the scope


def test_more_than_50_watched_groups_are_all_followed_in_several_filters(
    sandbox: Sandbox, http: Any, tmp_path: Path, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph takes at most 50 ids per delta filter: 55 configured groups need two, none is dropped."""
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    sales = sandbox.info["groups"]["Sales"]
    fillers = [f"00000000-0000-4000-8000-{n:012d}" for n in range(54)]  # unknown ids: Graph tracks nothing
    groups = [{"id": g, "name": f"filler {n}"} for n, g in enumerate(fillers)] + [{"id": sales, "name": "Sales"}]
    config = write_config(tmp_path / "many.yaml", sandbox.info, {"sandbox": {"groups": groups}})
    baseline = _tick(config, None)
    chunks = json.loads(baseline.cursor)["sandbox"]["groups"]
    assert [len(c) - 1 for c in chunks] == [50, 5] and sales in chunks[1]
    finance = _add_finance_user(sandbox, http)
    assert _targets(_tick(config, baseline.cursor).run_requests[0]) == [finance]


def test_a_reset_while_a_run_is_busy_still_asks_for_the_full_run(
    sandbox: Sandbox, sensor_env: Path, instance: dg.DagsterInstance
) -> None:
    baseline = _tick(sensor_env, None, instance).cursor
    _busy_run(instance)
    sandbox.control("POST", "graph", "delta/expire")
    result = _tick(sensor_env, baseline, instance)
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["entrasync/scope"] == "full"
