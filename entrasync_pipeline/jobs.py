"""The one job: all five assets of a profile (jobs select by group, so a new asset joins it)."""

import dagster as dg

# define_asset_job returns this; dagster does not export the name at top level.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition as JobTarget

from entrasync_pipeline.assets import GROUP

SYNC_JOB_NAME = "entrasync_sync_job"


def build_sync_job(partitions: dg.PartitionsDefinition) -> JobTarget:
    return dg.define_asset_job(
        SYNC_JOB_NAME,
        selection=dg.AssetSelection.groups(GROUP),
        partitions_def=partitions,
        description="Read Entra and Zammad, plan, check, apply — for one sync profile (partition).",
        tags={"entrasync/job": "sync"},
    )
