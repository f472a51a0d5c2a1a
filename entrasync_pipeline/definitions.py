"""The entrasync code location: wiring only (STYLE.md §2.6).

Profiles are static partitions named in the config (``$ENTRASYNC_CONFIG``), read when the code
location loads; without a config it loads with one ``default`` partition (validation, tests).
The CLI builds the same definitions for its config file and runs the same job in process.
"""

import dagster as dg

from entrasync_pipeline.assets import build_assets
from entrasync_pipeline.freshness_checks import build_freshness_checks
from entrasync_pipeline.io_manager import FrameIOManager
from entrasync_pipeline.jobs import build_sync_job
from entrasync_pipeline.resources import EntrasyncResource, Progress, SyncRunOptions, no_progress, progress_resource
from entrasync_pipeline.run_options import RUN_OPTIONS_RESOURCE
from entrasync_pipeline.schedules import build_sync_schedule
from entrasync_pipeline.sensors import build_delta_sensor, build_failure_sensor, build_health_sensor
from entrasync_pipeline.settings import ScheduleSettings, configured_profile_names, schedule_settings


def build_definitions(
    profiles: list[str],
    schedule: ScheduleSettings,
    config_path: str | dg.EnvVar = dg.EnvVar("ENTRASYNC_CONFIG"),
    progress: Progress = no_progress,
) -> dg.Definitions:
    partitions = dg.StaticPartitionsDefinition(profiles)
    freshness = build_freshness_checks(profiles)
    job = build_sync_job(without=freshness)
    return dg.Definitions(
        assets=dg.with_source_code_references(build_assets(partitions)),
        asset_checks=freshness,
        jobs=[job],
        schedules=[build_sync_schedule(job, schedule, profiles)],
        sensors=[
            build_delta_sensor(job, schedule, profiles),
            build_failure_sensor(job),
            build_health_sensor(schedule, profiles),
        ],
        resources={
            "entrasync": EntrasyncResource(config_path=config_path),
            RUN_OPTIONS_RESOURCE: SyncRunOptions(),
            "progress": progress_resource(progress),
            "io_manager": FrameIOManager(),
        },
    )


defs = build_definitions(configured_profile_names(), schedule_settings())
