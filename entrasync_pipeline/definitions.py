"""The entrasync code location: wiring only (STYLE.md §2.6)."""


import dagster as dg

from entrasync_pipeline import assets
from entrasync_pipeline.jobs import sync_job
from entrasync_pipeline.resources import EntrasyncResource
from entrasync_pipeline.schedules import build_sync_schedule
from entrasync_pipeline.sensors import build_delta_sensor, entrasync_failure_notifications
from entrasync_pipeline.settings import schedule_settings

_schedule = schedule_settings()

defs = dg.Definitions(
    assets=dg.with_source_code_references(dg.load_assets_from_modules([assets])),
    jobs=[sync_job],
    schedules=[build_sync_schedule(_schedule)],
    sensors=[build_delta_sensor(_schedule), entrasync_failure_notifications],
    resources={"entrasync": EntrasyncResource(config_path=dg.EnvVar("ENTRASYNC_CONFIG"))},
)
