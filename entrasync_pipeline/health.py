"""What the Dagster instance and the audit store say about each profile's health (read only).

``entrasync status``, the health sensor and the freshness checks all read the same facts here,
so the CLI, the UI and the notifications never disagree. Everything is read from the instance
(runs, their tags and events, the change-feed sensor's cursor) and the lease table; nothing is
written and neither Graph nor Zammad is called (``probe`` does that, on request only). The
verdict itself is the pure ``freshness.verdict``.

Which runs count: every finished run of the sync job for the profile, except dry runs a person
asked for (``run_options.RunOptions.counts_for_health``). Freshness is measured from the last
successful **full** run (tag ``entrasync/scope=full``): a targeted run also materializes
``zammad_sync``, which is why a stock last-update freshness check would be fooled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

# dagster does not export the enum of instigator kinds at top level.
from dagster._core.definitions.run_request import InstigatorType
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import make_url

from entrasync_pipeline.assets import INVALID_BY_FIELD
from entrasync_pipeline.entra.errors import EntraAuthError, GraphError
from entrasync_pipeline.feed import FeedPosition
from entrasync_pipeline.freshness import Facts, Limits, Verdict, verdict
from entrasync_pipeline.jobs import SYNC_JOB_NAME
from entrasync_pipeline.lease import lease_table
from entrasync_pipeline.run_options import (
    RUN_OPTIONS_RESOURCE,
    TAG_SCOPE,
    RunOptionsError,
    resolve_run_options,
    trigger_of,
)
from entrasync_pipeline.runs import outcome_of_run
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import ConfigError, Settings
from entrasync_pipeline.steps import REQUIRED_ATTRIBUTES
from entrasync_pipeline.zammad.errors import ZammadError

FEED_SENSOR = "entrasync_membership_delta"
HEALTH_SENSOR = "entrasync_health"
TAG_PARTITION = "dagster/partition"
UNIVERSAL_USERS = "universal_users"
INVALID_READS = 10  # latest universal_users materializations looked at for a full read
RECENT_RUNS = 100  # finished runs read per profile: the latest outcome, failure and blocked streak
FULL_SUCCESSES = 25  # successful full runs read to find the last one that counts
_SUCCESS = [dg.DagsterRunStatus.SUCCESS]
_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass
class RunInfo:
    """One run as health sees it."""

    run_id: str
    status: str  # ok | failed | blocked
    scope: str  # full | targeted
    trigger: str
    started: float | None
    ended: float | None
    error: str | None = None
    blocked_reason: str | None = None
    held_deactivations: int = 0
    approve_with: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "started": _iso(self.started), "ended": _iso(self.ended)}


@dataclass
class History:
    """The runs that decide a profile's health, newest first where it matters."""

    last_full_success: RunInfo | None = None
    last_targeted: RunInfo | None = None
    latest: RunInfo | None = None
    last_failure: RunInfo | None = None
    blocked_first: RunInfo | None = None  # first run of the current blocked streak
    blocked_latest: RunInfo | None = None  # its latest run: what to approve now

    def facts(self, now: float, watching_since: float | None = None) -> Facts:
        first = self.blocked_first
        return Facts(
            now=now,
            last_success=self.last_full_success.ended if self.last_full_success else None,
            latest=self.latest.status if self.latest else None,
            blocked_run=first.run_id if first else None,
            blocked_since=(first.ended or first.started) if first else None,
            watching_since=watching_since,
        )


@dataclass
class ProfileHealth:
    """Everything ``entrasync status`` shows for one profile."""

    profile: str
    verdict: Verdict
    history: History
    max_age_h: float
    holder: dict[str, Any] | None
    feed: dict[str, Any] | None
    audit_store: str
    invalid_values: dict[str, Any] | None = None
    probe: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        h = self.history
        blocked = None
        if h.blocked_first and h.blocked_latest:
            blocked = {
                "since": _iso(h.blocked_first.ended or h.blocked_first.started),
                "deactivations": h.blocked_latest.held_deactivations,
                "run_id": h.blocked_latest.run_id,
                "approve_with": h.blocked_latest.approve_with,
            }
        return {
            "profile": self.profile,
            "verdict": self.verdict.name,
            "reasons": list(self.verdict.reasons),
            "max_age_h": self.max_age_h,
            "last_full_success": h.last_full_success.to_json() if h.last_full_success else None,
            "last_targeted": h.last_targeted.to_json() if h.last_targeted else None,
            "last_failure": h.last_failure.to_json() if h.last_failure else None,
            "blocked": blocked,
            "current_run": self.holder,
            "feed": self.feed,
            "audit_store": self.audit_store,
            "invalid_values": self.invalid_values,
            **({"probe": self.probe} if self.probe else {}),
        }


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds")


# --- runs ------------------------------------------------------------------------------------------
def counts_for_health(run: dg.DagsterRun, settings: Settings) -> bool:
    """A run counts unless it is a dry run a person asked for (same rule as the heartbeat's)."""
    config = (run.run_config or {}).get("resources", {}).get(RUN_OPTIONS_RESOURCE, {}).get("config", {}) or {}
    try:
        options = resolve_run_options(
            config.get("dry_run"), config.get("approve_deactivations"), run.tags, settings.dry_run
        )
    except RunOptionsError:
        return True  # a run with a meaningless option failed for it: that failure counts
    return options.counts_for_health


def _info(instance: dg.DagsterInstance, record: Any) -> RunInfo:
    run = record.dagster_run
    status, error, reason, held, approve = "ok", None, None, 0, None
    if run.status != dg.DagsterRunStatus.SUCCESS:
        outcome = outcome_of_run(instance, run.run_id)
        status, error, reason = outcome.status, outcome.error, outcome.blocked_reason
        held, approve = outcome.held_deactivations, outcome.approve_with
    return RunInfo(
        run_id=run.run_id,
        status=status,
        scope=run.tags.get(TAG_SCOPE, "full"),
        trigger=trigger_of(run.tags),
        started=record.start_time,
        ended=record.end_time,
        error=error,
        blocked_reason=reason,
        held_deactivations=held,
        approve_with=approve,
    )


def _records(instance: dg.DagsterInstance, profile: str, limit: int, **filters: Any) -> list[Any]:
    tags = {TAG_PARTITION: profile, **filters.pop("tags", {})}
    return list(instance.get_run_records(dg.RunsFilter(job_name=SYNC_JOB_NAME, tags=tags, **filters), limit=limit))


def run_history(instance: dg.DagsterInstance, settings: Settings, profile: str) -> History:
    """The counted runs of ``profile`` that decide its health (newest first; bounded reads)."""
    history = History()
    for record in _records(instance, profile, FULL_SUCCESSES, tags={TAG_SCOPE: "full"}, statuses=_SUCCESS):
        if counts_for_health(record.dagster_run, settings):
            history.last_full_success = _info(instance, record)
            break
    infos = [
        _info(instance, r)
        for r in _records(instance, profile, RECENT_RUNS, statuses=_FINISHED)
        if counts_for_health(r.dagster_run, settings)
    ]
    history.latest = infos[0] if infos else None
    history.last_targeted = next((i for i in infos if i.scope == "targeted"), None)
    history.last_failure = next((i for i in infos if i.status == "failed"), None)
    _blocked_streak(history, infos)
    return history


def _blocked_streak(history: History, infos: list[RunInfo]) -> None:
    """A plan waits for approval while the latest full run (or the latest run) is blocked.

    A targeted run that succeeds after a blocked full run does not lift the block: the full
    plan's deactivations are still held. The streak's first run says since when.
    """
    fulls = [i for i in infos if i.scope == "full"]
    for stream in (fulls, infos):
        if stream and stream[0].status == "blocked":
            streak = []
            for info in stream:
                if info.status != "blocked":
                    break
                streak.append(info)
            history.blocked_first, history.blocked_latest = streak[-1], streak[0]
            return


# --- the change feed, the lease, the audit store -------------------------------------------------
def feed_position(instance: dg.DagsterInstance, profile: str, now: float) -> dict[str, Any] | None:
    """The change-feed sensor's position for ``profile`` and when it last advanced (its cursor)."""
    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == FEED_SENSOR]
    if not states:
        return None
    state = max(states, key=lambda s: getattr(s.instigator_data, "last_tick_timestamp", None) or 0.0)
    data = state.instigator_data
    cursor = json.loads(data.cursor) if data is not None and data.cursor else {}
    position = FeedPosition.from_json(cursor.get(profile))
    advanced = getattr(data, "last_tick_success_timestamp", None) if data is not None else None
    return {
        "sensor": state.status.value.lower(),
        "position": position.key if position else None,
        "pending": len(position.pending) if position else 0,
        "advanced": _iso(advanced),
        "age_s": None if advanced is None else round(now - advanced),
    }


def audit_location(settings: Settings) -> str:
    """The audit store in use, password masked."""
    return make_url(settings.audit_url().reveal()).render_as_string(hide_password=True)


def lease_holder(settings: Settings, profile: str, now: float) -> dict[str, Any] | None:
    """The run holding the profile now, read without creating anything (no table, no file: nobody)."""
    url = make_url(settings.audit_url().reveal())
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return None
    engine = create_engine(url, future=True)
    try:
        if not inspect(engine).has_table(lease_table.name):
            return None
        with engine.connect() as conn:
            row = conn.execute(select(lease_table).where(lease_table.c.profile == profile)).first()
    finally:
        engine.dispose()
    if row is None:
        return None
    holder = dict(row._mapping)
    expires = holder["expires"].replace(tzinfo=holder["expires"].tzinfo or timezone.utc).timestamp()
    if expires <= now:
        return None  # lapsed: the holder crashed, the next run takes it
    since = holder["since"].replace(tzinfo=holder["since"].tzinfo or timezone.utc).timestamp()
    return {"run_id": holder["run_id"], "host": holder["host"], "pid": holder["pid"], "since": _iso(since)}


def invalid_values(instance: dg.DagsterInstance, profile: str) -> dict[str, Any] | None:
    """The typed values the latest full read of Entra left out (``universal_users``' metadata).

    Not a health verdict: the sync ran and wrote everything else, but a person should fix the
    source (say, an employeeId "E1000" for an integer field), so ``status`` says it. Any full
    run counts, a dry run too: it read the same Entra data. None: no full read on record.
    """
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(UNIVERSAL_USERS), asset_partitions=[profile]),
        limit=INVALID_READS,
    )
    for record in found.records:
        run = instance.get_run_by_id(record.run_id)
        materialization = record.asset_materialization
        if run is None or materialization is None or run.tags.get(TAG_SCOPE, "full") != "full":
            continue  # a targeted run read only a few users
        metadata = materialization.metadata
        total = metadata.get("invalid_values")
        by_field = metadata.get(INVALID_BY_FIELD)
        return {
            "count": int(total.value) if total is not None else 0,
            "by_field": dict(by_field.value) if by_field is not None else {},
            "run_id": record.run_id,
            "read": _iso(record.timestamp),
        }
    return None


# --- everything for one profile ----------------------------------------------------------------------
def limits_of(settings: Settings, profile: str) -> Limits:
    freshness = settings.profiles[profile].freshness
    return Limits(freshness.max_age_h, freshness.approval_reminder_h)


def profile_health(instance: dg.DagsterInstance, settings: Settings, profile: str, now: float) -> ProfileHealth:
    """What ``entrasync status`` shows: runs, verdict, current run, change feed, audit store."""
    history = run_history(instance, settings, profile)
    limits = limits_of(settings, profile)
    return ProfileHealth(
        profile=profile,
        verdict=verdict(history.facts(now), limits),
        history=history,
        max_age_h=limits.max_age_h,
        holder=lease_holder(settings, profile, now),
        feed=feed_position(instance, profile, now),
        audit_store=audit_location(settings),
        invalid_values=invalid_values(instance, profile),
    )


def probe_health(found: ProfileHealth, settings: Settings) -> ProfileHealth:
    """``found`` with the probe's answers; a service that does not answer makes the verdict failing."""
    with ProfileRuntime(found.profile, settings) as runtime:
        answers = probe(runtime)
    failed = [f"{service} {answer}" for service, answer in answers.items() if not answer.startswith("ok")]
    result = replace(found, probe=answers)
    if failed:
        result.verdict = Verdict("failing", (*found.verdict.reasons, *(f"probe: {f}" for f in failed)))
    return result


def probe(runtime: ProfileRuntime) -> dict[str, str]:
    """Graph and Zammad answer with the configured credentials: reads only, never a write.

    Graph: a token and each configured group by id (proves the tenant, the app's permission and
    the group ids). Zammad: the roles (proves the token) and the custom user attributes a real
    sync needs.
    """
    result = {}
    try:
        for group in runtime.config.groups:
            runtime.graph.group(group.id)
        result["graph"] = f"ok: {len(runtime.config.groups)} group(s) readable"
    except (GraphError, EntraAuthError, ConfigError) as exc:
        result["graph"] = f"failed: {type(exc).__name__}: {exc}"
    try:
        roles = runtime.zammad.roles()
        missing = [name for name in REQUIRED_ATTRIBUTES if name not in runtime.zammad.user_attributes()]
        result["zammad"] = f"ok: {len(roles)} roles readable"
        if missing:
            result["zammad"] = f"failed: user attributes {', '.join(missing)} missing: run entrasync zammad-setup"
    except (ZammadError, ConfigError) as exc:
        result["zammad"] = f"failed: {type(exc).__name__}: {exc}"
    return result
