"""The real code location loads without secrets and has the job, schedule, sensors, assets and checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from entrasync_pipeline.definitions import build_definitions, defs
from entrasync_pipeline.freshness_checks import freshness_check_name
from entrasync_pipeline.settings import ScheduleSettings

REPO = Path(__file__).resolve().parents[1]
ASSETS = {"entra_group_members", "universal_users", "zammad_users", "sync_plan", "zammad_sync"}
FRESHNESS = "fresh_full_sync_default"
CHECKS = {
    ("universal_users", "universal_users_schema"),
    ("sync_plan", "sync_plan_schema"),
    ("sync_plan", "sync_plan_safety"),
    ("sync_plan", "sync_plan_fields"),
    ("sync_plan", "sync_plan_groups"),
}


def test_the_location_loads_without_secrets() -> None:
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("entrasync_sync_job")
    assert job.partitions_def is not None
    assert defs.resolve_schedule_def("entrasync_daily_sync").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("entrasync_membership_delta").default_status == dg.DefaultSensorStatus.STOPPED
    assert defs.resolve_sensor_def("entrasync_failure_notifications")
    assert defs.resolve_sensor_def("entrasync_health").default_status == dg.DefaultSensorStatus.RUNNING


def test_assets_and_their_metadata() -> None:
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == ASSETS
    for name, spec in specs.items():
        assert spec.group_name == "entrasync" and spec.owners == ["team:it-identity"], name
        assert spec.description and spec.kinds, name
        assert "dagster/code_references" in spec.metadata, name
    assert sorted(d.asset_key.to_user_string() for d in specs["sync_plan"].deps) == [
        "entra_group_members",
        "universal_users",
        "zammad_users",
    ]


def test_the_four_blocking_checks_sit_on_their_assets() -> None:
    """dagster 1.13 has no ``Definitions.resolve_all_asset_check_specs``: the resolved asset graph lists them."""
    graph = defs.resolve_asset_graph()
    specs = [graph.get_check_spec(key) for key in graph.asset_check_keys if key.name != FRESHNESS]
    assert sorted((s.asset_key.to_user_string(), s.name) for s in specs) == sorted(CHECKS)
    assert all(s.blocking for s in specs), [s.name for s in specs if not s.blocking]
    for key in graph.asset_check_keys:  # run by the step that materializes the asset they guard
        if key.name != FRESHNESS:
            assert key.asset_key in graph.assets_def_for_key(key).keys, key
    job = defs.resolve_job_def("entrasync_sync_job")
    assert {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys} == CHECKS


def test_dagster_definitions_validate_passes_from_the_repo_root() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ENTRASYNC_CONFIG", "DAGSTER_HOME")}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workspace_file_loads_the_location() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ENTRASYNC_CONFIG", "DAGSTER_HOME")}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_profile_has_a_freshness_check_that_the_sync_job_does_not_run() -> None:
    """The health sensor evaluates it; inside the sync it would only ever see a run still going."""
    location = build_definitions(["contoso", "fabrikam.eu"], ScheduleSettings())
    graph = location.resolve_asset_graph()
    fresh = sorted(k.name for k in graph.asset_check_keys if k.name.startswith("fresh_full_sync"))
    assert fresh == ["fresh_full_sync_contoso", freshness_check_name("fabrikam.eu")]
    assert freshness_check_name("fabrikam.eu").startswith("fresh_full_sync_fabrikam_eu_")
    assert not any(graph.get_check_spec(k).blocking for k in graph.asset_check_keys if k.name in fresh)
    job = location.resolve_job_def("entrasync_sync_job")
    assert {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys} == CHECKS
