"""The one job: all five assets of a profile (jobs select by group, so a new asset joins it)."""


import dagster as dg

from entrasync_pipeline.assets import GROUP
from entrasync_pipeline.partitions import PROFILES

SYNC_JOB_NAME = "entrasync_sync_job"

sync_job = dg.define_asset_job(
    SYNC_JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=PROFILES,
    description="Read Entra and Zammad, plan, check, apply — for one sync profile (partition).",
    tags={"entrasync/job": "sync"},
)
