"""Sensors: the Entra change feed → targeted sync runs; failure notifications; health.

The feed sensor (``feed``) follows each profile's users and group delta links every
``schedule.sensor_interval_s`` (30 s) and requests one targeted run per profile with the ids
whose change concerns it. Its run key is the new delta position, so a re-evaluated tick never
launches twice. While a run of the profile is queued or running, the ids wait in the cursor and
go into the next run together (bursts merge; the lease keeps two syncs of a profile apart
anyway). A reset or expired link, a changed configuration or more than
``schedule.targeted_max_users`` ids request a full run instead. Errors keep the old cursor: the
next tick tries again. The first tick takes a "from now" baseline and launches nothing.

The health sensor (``health``) judges each profile every ``schedule.health_interval_s``: it
records the profile's freshness check when its result changes and tells the profile's
notification URLs once when it turns stale, once when it recovers, and once per blocked plan
that waited longer than ``freshness.approval_reminder_h``. What was announced lives in its
cursor, so a daemon restart announces nothing twice; an undelivered message is tried again.
"""

import json
import logging
import time
from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from entrasync_pipeline import freshness, health, steps
from entrasync_pipeline.entra.errors import EntraAuthError, GraphError
from entrasync_pipeline.feed import FeedPosition, FeedStep, advance
from entrasync_pipeline.freshness_checks import freshness_evaluation
from entrasync_pipeline.jobs import JobTarget
from entrasync_pipeline.notify import Message, approval_reminder_message, recovered_message, stale_message
from entrasync_pipeline.resources import EntrasyncResource
from entrasync_pipeline.run_options import RUN_OPTIONS_RESOURCE, TAG_TRIGGER, scope_tags
from entrasync_pipeline.runs import outcome_of_run
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import ConfigError, ScheduleSettings, Settings

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
        description="Tells the profile's notification targets (and its heartbeat_url with the fail "
        "suffix) when a sync run failed.",
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
            if health.counts_for_health(run, runtime.settings):
                steps.heartbeat(runtime, failed=True)

    return entrasync_failure_notifications


# --- health ------------------------------------------------------------------------------------------
def _when(moment: float | None) -> str:
    if moment is None:
        return "never"
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _health_message(
    kind: freshness.Announcement,
    profile: str,
    history: health.History,
    facts: freshness.Facts,
    limits: freshness.Limits,
) -> Message:
    if kind is freshness.Announcement.STALE:
        latest = history.latest
        said = None
        if latest is not None:
            said = f"{latest.status} ({latest.scope}, {_when(latest.ended)}, run {latest.run_id})"
            said += f": {latest.error}" if latest.error else ""
        command = f"entrasync status --profile {profile}"
        return stale_message(
            profile, _when(facts.last_success) if facts.last_success else None, limits.max_age_h, said, command
        )
    if kind is freshness.Announcement.RECOVERED:
        last = history.last_full_success
        return recovered_message(profile, last.run_id if last else "?", _when(facts.last_success))
    blocked = history.blocked_latest
    since = facts.blocked_since or facts.now
    return approval_reminder_message(
        profile,
        blocked.held_deactivations if blocked else 0,
        _when(since),
        f"{freshness.duration(facts.now - since)} ago",
        blocked.blocked_reason if blocked else None,
        blocked.approve_with if blocked else None,
    )


def _announce(
    settings: Settings,
    profile: str,
    due: list[freshness.Announcement],
    history: health.History,
    facts: freshness.Facts,
    episode: freshness.Episode,
) -> freshness.Episode:
    """Send what is due; only a delivered message moves the episode on (the rest is tried next tick)."""
    limits = health.limits_of(settings, profile)
    try:
        with ProfileRuntime(profile, settings) as runtime:
            notifier = runtime.notifier()
            for kind in due:
                if notifier.send(_health_message(kind, profile, history, facts, limits)):
                    episode = freshness.announced(episode, kind, facts)
    except ConfigError as exc:  # e.g. a ${VAR} of a notification URL is not set
        log.warning("%s: health notification not sent: %s", profile, exc)
    return episode


def _health_tick(
    instance: dg.DagsterInstance, settings: Settings, profile: str, raw: object, now: float
) -> tuple[freshness.Episode, dg.AssetCheckEvaluation | None, str]:
    """One profile: (its new episode, a check evaluation to record or None, the verdict for the tick)."""
    episode = freshness.Episode.from_json(raw, now)
    history = health.run_history(instance, settings, profile)
    facts, limits = history.facts(now, episode.watching_since), health.limits_of(settings, profile)
    evaluation = None
    if freshness.check_changed(episode, facts, limits):
        evaluation = freshness_evaluation(profile, history, facts, limits)
        episode = freshness.checked(episode, facts, limits)
    due = freshness.announcements(episode, facts, limits)
    if due:
        episode = _announce(settings, profile, due, history, facts, episode)
    return episode, evaluation, freshness.verdict(facts, limits).name


def build_health_sensor(schedule: ScheduleSettings, profiles: list[str]) -> dg.SensorDefinition:
    @dg.sensor(
        name=health.HEALTH_SENSOR,
        minimum_interval_seconds=schedule.health_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Each profile's freshness check (last successful full sync within freshness.max_age_h) "
        "and approval reminders; tells the notification URLs once when a profile turns stale, once "
        "when it recovers. Reads the Dagster instance only.",
    )
    def entrasync_health(context: dg.SensorEvaluationContext, entrasync: EntrasyncResource) -> dg.SensorResult:
        cursor: dict[str, object] = json.loads(context.cursor) if context.cursor else {}
        try:
            settings = entrasync.settings()
        except ConfigError as exc:
            return dg.SensorResult(skip_reason=str(exc))
        now, events, notes = time.time(), [], []
        for name in profiles:
            if name not in settings.profiles:
                continue
            episode, evaluation, verdict = _health_tick(context.instance, settings, name, cursor.get(name), now)
            cursor[name] = episode.to_json()
            notes.append(f"{name}: {verdict}")
            if evaluation is not None:
                events.append(evaluation)
        return dg.SensorResult(
            asset_events=events,
            cursor=json.dumps(cursor, sort_keys=True),
            skip_reason="; ".join(notes) or "no profiles",
        )

    return entrasync_health
