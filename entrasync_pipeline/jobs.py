"""The one job: all five assets of a profile (jobs select by group, so a new asset joins it).

Its steps run in the run's own process (``in_process_executor``): they run one after another
under the profile's lease anyway, and a process per step would cost a Python start-up each
(seconds) — most of a targeted run's time, and of the sensor's latency, when the daemon runs it.
"""

from collections.abc import Sequence

import dagster as dg

# define_asset_job returns this; dagster does not export the name at top level.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition as JobTarget

from entrasync_pipeline.assets import GROUP

SYNC_JOB_NAME = "entrasync_sync_job"


def build_sync_job(without: Sequence[dg.AssetChecksDefinition] = ()) -> JobTarget:
    """``without``: checks on the group's assets that the sync does not run (the freshness checks,
    which the health sensor evaluates: inside the sync they would only ever see a run still going).

    The job is partitioned by profile like its assets: Dagster takes the partitions from them
    (passing ``partitions_def`` as well is deprecated)."""
    selection = dg.AssetSelection.groups(GROUP)
    if without:
        selection = selection - dg.AssetSelection.checks(*without)
    return dg.define_asset_job(
        SYNC_JOB_NAME,
        selection=selection,
        description="Read Entra and Zammad, plan, check, apply — for one sync profile (partition).",
        tags={"entrasync/job": "sync"},
        executor_def=dg.in_process_executor,
    )
