"""Sensors: Graph group delta → a sync run when membership changed; failure notifications.

The delta sensor keeps one deltaLink per profile in its cursor (JSON). The first tick takes a
"from now" baseline (``$deltatoken=latest``: cheap, no full download); later ticks follow the
link and request a run only when ``members@delta`` changed. An expired link (400
syncStateNotFound) or a reset (410) starts a new baseline and requests a full sync, which
reconciles by set difference. The run key is derived from the new deltaLink, so a re-evaluated
tick never launches twice. Errors keep the old cursor: the next tick tries again.
"""

import hashlib
import json
import logging

import dagster as dg
import pandas as pd

from entrasync_pipeline import steps
from entrasync_pipeline.entra.errors import DeltaResetRequired, EntraAuthError, GraphError
from entrasync_pipeline.jobs import JobTarget
from entrasync_pipeline.resources import EntrasyncResource
from entrasync_pipeline.run_options import TAG_TRIGGER
from entrasync_pipeline.runs import outcome_of_run
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import ConfigError, ScheduleSettings

TAG_DELTA = "entrasync/delta"

log = logging.getLogger(__name__)


def _key(profile: str, link: str) -> str:
    return f"{profile}:delta:{hashlib.sha256(link.encode()).hexdigest()[:24]}"


def _tick(profile: ProfileRuntime, link: str | None) -> tuple[str, dg.RunRequest | None, str]:
    """One profile's delta step: (new link, run request or None, what happened)."""
    graph = profile.graph
    groups = [g.id for g in profile.config.groups]
    if link is None:
        baseline = graph.group_delta_latest(groups)
        return baseline, None, "baseline taken"
    try:
        round_ = graph.group_delta(groups, link)
    except DeltaResetRequired as exc:
        baseline = graph.group_delta_latest(groups)
        request = dg.RunRequest(
            run_key=_key(profile.name, baseline),
            partition_key=profile.name,
            tags={TAG_TRIGGER: "sensor", TAG_DELTA: "reset"},
        )
        return baseline, request, f"delta state reset by Graph ({exc.code or exc.status}); full sync requested"
    if not round_.changed:
        return round_.delta_link, None, "no membership change"
    added = sum(len(v) for v in round_.added.values())
    removed = sum(len(v) for v in round_.removed.values())
    request = dg.RunRequest(
        run_key=_key(profile.name, round_.delta_link),
        partition_key=profile.name,
        tags={TAG_TRIGGER: "sensor", TAG_DELTA: f"+{added} -{removed}"},
    )
    return round_.delta_link, request, f"{added} added, {removed} removed"


def build_delta_sensor(job: JobTarget, schedule: ScheduleSettings, profiles: list[str]) -> dg.SensorDefinition:
    @dg.sensor(
        name="entrasync_membership_delta",
        job=job,
        minimum_interval_seconds=schedule.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Polls Graph group delta and syncs a profile when its groups' membership changed.",
    )
    def entrasync_membership_delta(
        context: dg.SensorEvaluationContext, entrasync: EntrasyncResource
    ) -> dg.SensorResult:
        cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        try:
            settings = entrasync.settings()
        except ConfigError as exc:
            return dg.SensorResult(skip_reason=str(exc))
        requests, notes = [], []
        for name in profiles:
            if name not in settings.profiles:
                continue
            with ProfileRuntime(name, settings) as profile:
                try:
                    cursor[name], request, note = _tick(profile, cursor.get(name))
                except (GraphError, EntraAuthError, ConfigError) as exc:
                    note = f"delta query failed, will retry next tick: {type(exc).__name__}: {exc}"
                    context.log.warning("%s: %s", name, note)
                    request = None
            notes.append(f"{name}: {note}")
            if request is not None:
                requests.append(request)
        skip = None if requests else "; ".join(notes) or "no profiles"
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True), skip_reason=skip)

    return entrasync_membership_delta


def build_failure_sensor(job: JobTarget) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="entrasync_failure_notifications",
        monitored_jobs=[job],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Tells the profile's notification targets when a sync run failed.",
    )
    def entrasync_failure_notifications(context: dg.RunFailureSensorContext, entrasync: EntrasyncResource) -> None:
        run = context.dagster_run
        profile_name = run.tags.get("dagster/partition")
        outcome = outcome_of_run(context.instance, run.run_id)
        if not profile_name or outcome.status == "blocked":
            return  # a blocked plan was announced as blocked when it was planned
        try:
            runtime = entrasync.runtime(profile_name)
        except ConfigError as exc:
            context.log.warning("no notification: %s", exc)
            return
        # The cause in our words (e.g. "run entrasync zammad-setup"), not Dagster's "steps failed".
        message = outcome.error or context.failure_event.message or "run failed"
        with runtime:
            steps.notify(runtime, pd.DataFrame(), None, None, failure=f"run {run.run_id}: {message[:300]}")

    return entrasync_failure_notifications
