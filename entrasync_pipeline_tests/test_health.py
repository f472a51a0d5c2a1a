"""Health as the daemon sees it: the freshness check, its one-per-episode messages, the heartbeat.

A sync that silently stops is caught by the health sensor: when the last successful *full* run is
older than ``freshness.max_age_h`` the profile's freshness check turns red and its notification
URLs get exactly one message, and one "recovered" message when a full run succeeds again. A
targeted run does not count (it also materializes ``zammad_sync``). What was announced lives in
the sensor's cursor, so a restarted daemon does not announce again. A plan blocked longer than
``freshness.approval_reminder_h`` is reminded once. Every successful run pings the heartbeat URL
once, a failed run pings it with the fail suffix, a blocked run or a person's dry run not at all.
Everything runs against the sandbox, a local webhook receiver and a local HTTPS heartbeat monitor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from entrasync_pipeline.freshness_checks import freshness_check_name
from entrasync_pipeline.resources import EntrasyncResource
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config
from entrasync_pipeline_tests.tenant import Admin, Runner, setup_attributes

PING = "/ping/5e3c-secret-token"
CHECK = dg.AssetCheckKey(dg.AssetKey("zammad_sync"), freshness_check_name("sandbox"))


def _config(sandbox: Sandbox, tmp_path: Path, heartbeat: Any, webhook: Any, **freshness: float) -> Path:
    group = sandbox.info["groups"]["IT Support"]
    profile = {
        "groups": [{"id": group, "name": "IT Support"}],
        "notifications": {
            "urls": [webhook.url],
            "on_changes": False,
            "heartbeat_url": "${ENTRASYNC_TEST_HEARTBEAT}",
            "heartbeat_fail_suffix": "/fail",
            "heartbeat_timeout_s": 5,
        },
        "freshness": freshness,
    }
    return write_config(
        tmp_path / "entrasync.yaml", sandbox.info, {"sandbox": profile}, tls={"ca_bundle": str(heartbeat.ca_bundle)}
    )


@pytest.fixture
def env_with_heartbeat(dagster_env: dict[str, str], heartbeat: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ENTRASYNC_TEST_HEARTBEAT", heartbeat.url)
    return {**dagster_env, "ENTRASYNC_TEST_HEARTBEAT": heartbeat.url}


def _health(runner: Runner, cursor: str | None) -> dg.SensorResult:
    """One tick of the health sensor; its check results are recorded as the daemon records them."""
    sensor = runner.defs.resolve_sensor_def("entrasync_health")
    with dg.build_sensor_context(
        cursor=cursor,
        instance=runner.instance,
        resources={"entrasync": EntrasyncResource(config_path=str(runner.config))},
        repository_def=runner.defs.get_repository_def(),
    ) as context:
        result = sensor(context)
    for event in result.asset_events:
        runner.instance.report_runless_asset_event(event)
    return result


def _check_status(instance: dg.DagsterInstance) -> str:
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([CHECK])
    return latest[CHECK].status.value


def _failure_sensor(runner: Runner, result: dg.ExecuteInProcessResult) -> None:
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="entrasync_failure_notifications",
        dagster_instance=runner.instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
        resources={"entrasync": EntrasyncResource(config_path=str(runner.config))},
    ).for_run_failure()
    runner.defs.resolve_sensor_def("entrasync_failure_notifications")(context)


def test_stale_once_per_episode_recovered_once_and_one_heartbeat_per_successful_run(
    sandbox: Sandbox, tmp_path: Path, env_with_heartbeat: dict[str, str], instance: Any, webhook: Any, heartbeat: Any
) -> None:
    config = _config(sandbox, tmp_path, heartbeat, webhook, max_age_h=0.002)  # 7.2 s
    setup_attributes(config, env_with_heartbeat)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success
    assert heartbeat.paths == [PING]

    first = _health(runner, None)
    assert [e.passed for e in first.asset_events] == [True] and _check_status(instance) == "SUCCEEDED"
    assert webhook.received == []

    time.sleep(7.5)  # the last full run is now older than max_age_h
    stale = _health(runner, first.cursor)
    assert [e.passed for e in stale.asset_events] == [False] and _check_status(instance) == "FAILED"
    assert [m["title"] for m in webhook.received] == [
        "entrasync sandbox: no successful full sync for more than 0.002 h"
    ]
    assert "entrasync status --profile sandbox" in webhook.received[0]["message"]
    quiet = _health(runner, stale.cursor)
    restarted = _health(runner, quiet.cursor)  # a new daemon process reads the same stored cursor
    assert quiet.asset_events == [] and restarted.asset_events == [] and len(webhook.received) == 1

    member = sandbox.state("graph")["groups"][sandbox.info["groups"]["IT Support"]][0]
    assert runner.targeted([member]).success  # materializes zammad_sync, but is no full sync
    still = _health(runner, restarted.cursor)
    assert still.asset_events == [] and len(webhook.received) == 1 and _check_status(instance) == "FAILED"

    assert runner.run().success
    recovered = _health(runner, still.cursor)
    assert [e.passed for e in recovered.asset_events] == [True] and _check_status(instance) == "SUCCEEDED"
    assert [m["title"] for m in webhook.received][1:] == ["entrasync sandbox: syncing again"]
    assert _health(runner, recovered.cursor).asset_events == [] and len(webhook.received) == 2
    assert heartbeat.paths == [PING, PING, PING]  # three successful runs: full, targeted, full


def test_an_undelivered_stale_message_is_sent_on_a_later_tick(
    sandbox: Sandbox, tmp_path: Path, env_with_heartbeat: dict[str, str], instance: Any, webhook: Any, heartbeat: Any
) -> None:
    config = _config(sandbox, tmp_path, heartbeat, webhook, max_age_h=0.0001)
    runner = Runner(config, ["sandbox"], instance)  # never synced: watched from the first tick
    first = _health(runner, None)
    time.sleep(1)
    webhook.server.shutdown()
    webhook.server.server_close()
    missed = _health(runner, first.cursor)  # the receiver is down: apprise fails, the episode stays open
    assert [e.passed for e in missed.asset_events] == [False] and webhook.received == []
    replacement = type(webhook)()
    config.write_text(config.read_text().replace(webhook.url, replacement.url))
    try:
        delivered = _health(runner, missed.cursor)
        assert [m["title"] for m in replacement.received] == [
            "entrasync sandbox: no successful full sync for more than 0.0001 h"
        ]
        _health(runner, delivered.cursor)
        assert len(replacement.received) == 1
    finally:
        replacement.server.shutdown()


def test_a_blocked_plan_is_reminded_once_and_neither_blocked_nor_dry_runs_ping(
    sandbox: Sandbox,
    http: Any,
    tmp_path: Path,
    env_with_heartbeat: dict[str, str],
    instance: Any,
    webhook: Any,
    heartbeat: Any,
) -> None:
    config = _config(sandbox, tmp_path, heartbeat, webhook, approval_reminder_h=0.001)  # 3.6 s
    setup_attributes(config, env_with_heartbeat)
    runner = Runner(config, ["sandbox"], instance)
    assert runner.run().success
    dry = runner.run(run_config={"resources": {"run_options": {"config": {"dry_run": True}}}})
    assert dry.success and heartbeat.paths == [PING]  # a person's dry run is no sync
    admin, group = Admin(sandbox, http), sandbox.info["groups"]["IT Support"]
    objects = sandbox.state("graph")["objects"]
    for user_id in [m for m in admin.members(group) if objects[m]["@odata.type"].endswith("user")][:6]:
        admin.remove(group, user_id)
    blocked = runner.run()
    assert not blocked.success
    _failure_sensor(runner, blocked)  # a blocked run is no failure: no /fail
    assert heartbeat.paths == [PING]
    webhook.received.clear()

    first = _health(runner, None)
    assert webhook.received == []  # blocked for less than approval_reminder_h
    time.sleep(4)
    reminded = _health(runner, first.cursor)
    assert [m["title"] for m in webhook.received] == ["entrasync sandbox: a blocked plan waits for approval"]
    assert "6 deactivations" in webhook.received[0]["message"]
    assert "entrasync sync --profile sandbox --approve-deactivations 6" in webhook.received[0]["message"]
    _health(runner, reminded.cursor)
    assert len(webhook.received) == 1


def test_a_failed_run_pings_the_fail_url_and_an_unreachable_monitor_fails_nothing(
    sandbox: Sandbox, tmp_path: Path, env_with_heartbeat: dict[str, str], instance: Any, webhook: Any, heartbeat: Any
) -> None:
    config = _config(sandbox, tmp_path, heartbeat, webhook)
    runner = Runner(config, ["sandbox"], instance)
    failed = runner.run()  # zammad-setup never ran: the plan refuses to write
    assert not failed.success and heartbeat.paths == []
    _failure_sensor(runner, failed)
    assert heartbeat.paths == [f"{PING}/fail"]
    assert [m["title"] for m in webhook.received] == ["entrasync sandbox: sync failed"]
    setup_attributes(config, env_with_heartbeat)
    heartbeat.status = 500
    assert runner.run().success  # the monitor refused the ping: logged, the run still succeeds
    assert heartbeat.paths == [f"{PING}/fail", PING]
    assert all("secret-token" not in m["message"] for m in webhook.received)


def test_the_freshness_check_can_be_executed_on_demand(
    sandbox: Sandbox, tmp_path: Path, env_with_heartbeat: dict[str, str], instance: Any, webhook: Any, heartbeat: Any
) -> None:
    config = _config(sandbox, tmp_path, heartbeat, webhook)
    runner = Runner(config, ["sandbox"], instance)
    check = next(c for c in runner.defs.asset_checks if CHECK in c.check_keys)
    resources = {"entrasync": EntrasyncResource(config_path=str(config))}
    assert check(dg.build_asset_check_context(resources=resources, instance=instance)).passed is False  # never synced
    setup_attributes(config, env_with_heartbeat)
    assert runner.run().success
    result = check(dg.build_asset_check_context(resources=resources, instance=instance))
    assert result.passed is True and result.metadata["age_h"].value < 1
