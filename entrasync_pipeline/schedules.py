"""The daily sync: one run per profile at the configured cron and timezone (default 02:00 UTC)."""

import dagster as dg

from entrasync_pipeline.jobs import JobTarget
from entrasync_pipeline.run_options import TAG_TRIGGER
from entrasync_pipeline.settings import ScheduleSettings


def build_sync_schedule(job: JobTarget, schedule: ScheduleSettings, profiles: list[str]) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="entrasync_daily_sync",
        job=job,
        cron_schedule=schedule.cron,
        execution_timezone=schedule.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Sync every profile at '{schedule.cron}' ({schedule.timezone}).",
    )
    def entrasync_daily_sync(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
        return [
            dg.RunRequest(run_key=f"{profile}:{stamp}", partition_key=profile, tags={TAG_TRIGGER: "schedule"})
            for profile in profiles
        ]

    return entrasync_daily_sync
