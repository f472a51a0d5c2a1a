"""Sensors: the Entra change feed → targeted sync runs; failure notifications.

The feed sensor (``feed``) follows each profile's users and group delta links every
``schedule.sensor_interval_s`` (30 s) and requests one targeted run per profile with the ids
whose change concerns it. Its run key is the new delta position, so a re-evaluated tick never
launches twice. While a run of the profile is queued or running, the ids wait in the cursor and
go into the next run together (bursts merge; the lease keeps two syncs of a profile apart
anyway). A reset or expired link, a changed configuration or more than
``schedule.targeted_max_users`` ids request a full run instead. Errors keep the old cursor: the
next tick tries again. The first tick takes a "from now" baseline and launches nothing.
"""

import json
import logging

import dagster as dg
import pandas as pd

from entrasync_pipeline import steps
from entrasync_pipeline.entra.errors import EntraAuthError, GraphError
from entrasync_pipeline.feed import FeedPosition, FeedStep, advance
from entrasync_pipeline.jobs import JobTarget
from entrasync_pipeline.resources import EntrasyncResource
from entrasync_pipeline.run_options import RUN_OPTIONS_RESOURCE, TAG_TRIGGER, scope_tags
from entrasync_pipeline.runs import outcome_of_run
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import ConfigError, ScheduleSettings

TAG_DELTA = "entrasync/delta"
_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

log = logging.getLogger(__name__)


def _busy(instance: dg.DagsterInstance, job_name: str, profile: str) -> bool:
    """A run of this profile is queued or running: new ids wait for the next run."""
    runs = instance.get_runs(
        dg.RunsFilter(job_name=job_name, statuses=_UNFINISHED, tags={"dagster/partition": profile}), limit=1
    )
    return bool(runs)


def _request(profile: str, step: FeedStep, limit: int) -> dg.RunRequest:
    """A targeted run for the step's ids, or a full run when the feed cannot be trusted or is too big."""
    key = f"{profile}:feed:{step.position.key}"
    if step.full_run is None and len(step.targets) > limit:
        step.full_run = f"{len(step.targets)} users changed (more than {limit}): a full run is cheaper"
    if step.full_run is not None:
        tags = {TAG_TRIGGER: "sensor", TAG_DELTA: "full", **scope_tags(None)}
        return dg.RunRequest(run_key=key, partition_key=profile, tags=tags)
    targets = sorted(step.targets)
    return dg.RunRequest(
        run_key=key,
        partition_key=profile,
        run_config={"resources": {RUN_OPTIONS_RESOURCE: {"config": {"targets": targets}}}},
        tags={TAG_TRIGGER: "sensor", TAG_DELTA: f"{len(targets)} users", **scope_tags(targets)},
    )


def _tick(
    runtime: ProfileRuntime, raw: object, busy: bool, limit: int
) -> tuple[FeedPosition, dg.RunRequest | None, str]:
    """One profile's feed step: (new position, run request or None, what happened)."""

    def known(ids: set[str]) -> set[str]:
        return set(runtime.audit.known_users(runtime.name, ids))

    step = advance(runtime.graph, runtime.config, FeedPosition.from_json(raw), known)
    if not step.targets and step.full_run is None:
        return step.position, None, step.note or "no change"
    if busy and step.full_run is None:  # a full run is requested anyway: the daemon's queue keeps it apart
        step.position.pending = sorted(step.targets)
        return step.position, None, f"{step.note}; a run of the profile is busy: {len(step.targets)} ids wait"
    request = _request(runtime.name, step, limit)
    step.position.pending = []
    return step.position, request, step.full_run or f"{step.note}; targeted run for {len(step.targets)} users"


def build_delta_sensor(job: JobTarget, schedule: ScheduleSettings, profiles: list[str]) -> dg.SensorDefinition:
    @dg.sensor(
        name="entrasync_membership_delta",
        job=job,
        minimum_interval_seconds=schedule.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="The Entra change feed (users and group delta): a targeted sync of the users whose "
        "membership or properties changed; a full sync when the feed was reset.",
    )
    def entrasync_membership_delta(
        context: dg.SensorEvaluationContext, entrasync: EntrasyncResource
    ) -> dg.SensorResult:
        cursor: dict[str, object] = json.loads(context.cursor) if context.cursor else {}
        try:
            settings = entrasync.settings()
        except ConfigError as exc:
            return dg.SensorResult(skip_reason=str(exc))
        limit = settings.schedule.targeted_max_users
        requests, notes = [], []
        for name in profiles:
            if name not in settings.profiles:
                continue
            busy = _busy(context.instance, job.name, name)
            with ProfileRuntime(name, settings) as runtime:
                try:
                    position, request, note = _tick(runtime, cursor.get(name), busy, limit)
                    cursor[name] = position.to_json()
                except (GraphError, EntraAuthError, ConfigError) as exc:
                    note = f"change feed failed, will retry next tick: {type(exc).__name__}: {exc}"
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
