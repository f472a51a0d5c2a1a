"""Run the sync job for one profile in this process, and read what any run of it did.

The CLI and ``make bench`` execute ``entrasync_sync_job`` in process on the instance of
``DAGSTER_HOME`` (so the run, its events, materializations and checks show in the UI like a
daemon's run). ``outcome_of_run`` reads a finished run back from the instance's event log, the
same way for a CLI run and for one the daemon launched, so both are reported identically.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import dagster as dg
import pandas as pd

from entrasync_pipeline.checks import SETUP_CHECKS, SYNC_PLAN_SAFETY_CHECK
from entrasync_pipeline.jobs import SYNC_JOB_NAME
from entrasync_pipeline.plan import (
    COUNT_COLUMNS,
    COUNT_NAMES,
    HELD_ACTIONS,
    WRITE_ACTIONS,
    Action,
    action_counts,
    plan_changes,
)
from entrasync_pipeline.run_options import (
    INTERRUPTED_TEXT,
    RUN_OPTIONS_RESOURCE,
    TAG_SCOPE,
    TAG_TRIGGER,
    scope_tags,
    trigger_of,
)
from entrasync_pipeline.settings import ConfigError, Settings
from entrasync_pipeline.targeted import TARGETS_TRACE, TARGETS_WRITES

EXIT_OK, EXIT_FAILED, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2, 64
# A run a signal stopped exits 128 + the signal's number, as shells report it: 130 SIGINT, 143 SIGTERM.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
_STEP_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
}


@dataclass
class RunOutcome:
    """What one run did, for people (tables) and machines (``--json``)."""

    profile: str
    run_id: str | None
    status: str  # ok | failed | blocked
    dry_run: bool | None
    counts: dict[str, int]
    trigger: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    blocked_reason: str | None = None
    stopped: str | None = None
    approve_with: str | None = None
    held_deactivations: int = 0  # a blocked run: the deactivations it holds back
    skipped_member_types: dict[str, int] = field(default_factory=dict)
    contacts_read: int = 0  # organizational contacts among the members read
    scope: str = "full"
    targets: list[dict[str, Any]] = field(default_factory=list)  # a targeted run's per-user story
    plan: pd.DataFrame | None = field(default=None, repr=False)
    interrupted_by: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM), if one did

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        if self.status == "blocked":
            return EXIT_BLOCKED
        if self.status == "failed" or self.counts.get("failed", 0):
            return EXIT_FAILED
        return EXIT_OK

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "run_id": self.run_id,
            "status": self.status,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "blocked": self.status == "blocked",
            "blocked_reason": self.blocked_reason,
            "approve_with": self.approve_with,
            "stopped": self.stopped,
            "error": self.error,
            **self.counts,
            "plan": action_counts(self.plan) if self.plan is not None else None,
            "skipped_member_types": self.skipped_member_types,
            "contacts_read": self.contacts_read,
            "scope": self.scope,
            **({"targets": self.targets} if self.scope == "targeted" else {}),
            "changes": self.changes,
        }


# --- the instance ----------------------------------------------------------------------------------
@contextmanager
def cli_instance(environ: Mapping[str, str] | None = None) -> Iterator[dg.DagsterInstance]:
    """DAGSTER_HOME's instance, or a throwaway one (said once on stderr) when it is unset."""
    environ = os.environ if environ is None else environ
    home = environ.get("DAGSTER_HOME")
    if home:
        if not Path(home).is_dir():
            # Unsetting it is no way out: status needs it, and so does the audit store without audit.url.
            raise ConfigError(
                f"DAGSTER_HOME={home} is not a directory: create it (mkdir -p {home}), or set DAGSTER_HOME "
                "to the directory of the Dagster instance your webserver and daemon use"
            )
        with _first_use_lock(Path(home)):
            instance = dg.DagsterInstance.get()
        with instance:
            yield instance
        return
    print(
        "note: DAGSTER_HOME is not set: this run is recorded in a temporary Dagster instance and will not "
        "show in the Dagster UI",
        file=sys.stderr,
    )
    with TemporaryDirectory(prefix="entrasync-dagster-") as tmp, dg.DagsterInstance.ephemeral(tempdir=tmp) as inst:
        yield inst


@contextmanager
def _first_use_lock(home: Path) -> Iterator[None]:
    """Open the instance under a file lock: on a new DAGSTER_HOME, opening it creates its SQLite
    tables, and two CLI runs doing that at the same moment would collide ("table already exists")."""
    with open(home / ".entrasync-instance.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- executing ---------------------------------------------------------------------------------------
def execute_sync(
    defs: dg.Definitions,
    settings: Settings,
    profile: str,
    instance: dg.DagsterInstance,
    dry_run: bool | None = None,
    approve_deactivations: int | None = None,
    log_level: str = "INFO",
    targets: list[str] | None = None,
) -> RunOutcome:
    """Run the job for ``profile`` in process; None options fall back to run tags, then the file.

    ``targets``: Entra object ids for a targeted run (None: a full run).
    """
    explicit = {"dry_run": dry_run, "approve_deactivations": approve_deactivations, "targets": targets}
    run_config = {
        "resources": {RUN_OPTIONS_RESOURCE: {"config": {k: v for k, v in explicit.items() if v is not None}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    run_id = str(uuid.uuid4())  # chosen here so the lease can be released however the run ends
    with _signals_seen() as seen:
        try:
            result = defs.resolve_job_def(SYNC_JOB_NAME).execute_in_process(
                instance=instance,
                partition_key=profile,
                run_config=run_config,
                tags={TAG_TRIGGER: "cli", **scope_tags(targets)},
                run_id=run_id,
                raise_on_error=False,
            )
        finally:
            _release_leases(settings, profile, run_id)
    outcome = outcome_of_run(instance, result.run_id, _plan_of(result))
    outcome.interrupted_by = next((s for s in seen if s in INTERRUPTS), None)
    return outcome


@contextmanager
def _signals_seen() -> Iterator[list[int]]:
    """The signals that arrived while the block ran, filled in when it ends.

    Dagster turns SIGTERM into the same interrupt as SIGINT (its handler does not say which), yet
    a shell or a supervisor expects 130 after a Ctrl-C and 143 after a SIGTERM. The wakeup fd is
    written by the interpreter's C handler for every signal, whichever Python handler is installed,
    so it tells them apart without replacing Dagster's handlers. Off the main thread: nothing seen.
    """
    seen: list[int] = []
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    try:
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield seen
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
            try:
                seen.extend(os.read(read, 256))
            except BlockingIOError:  # no signal arrived
                pass
        os.close(read)
        os.close(write)


def _plan_of(result: dg.ExecuteInProcessResult) -> pd.DataFrame | None:
    try:
        return result.output_for_node("sync_plan")
    except Exception:  # the run ended before a plan existed
        return None


def _release_leases(settings: Settings, profile: str, run_id: str) -> None:
    """Whatever way the run ended (failure, block, Ctrl-C), it holds the profile no longer."""
    from entrasync_pipeline.runtime import ProfileRuntime

    with ProfileRuntime(profile, settings) as runtime:
        runtime.lease(run_id).release()


# --- reading a run back ----------------------------------------------------------------------------------
def outcome_of_run(instance: dg.DagsterInstance, run_id: str, plan: pd.DataFrame | None = None) -> RunOutcome:
    """What the run did, from the instance: its tags, materializations, checks and failures."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise LookupError(f"no run {run_id} in this Dagster instance")
    metadata: dict[str, dict[str, Any]] = {}
    checks: dict[str, Any] = {}
    failures: list[str] = []
    for entry in instance.all_logs(run_id, of_type=_STEP_EVENTS):
        if entry.asset_materialization is not None:
            key = entry.asset_materialization.asset_key.to_user_string()
            metadata[key] = {k: getattr(v, "value", v) for k, v in entry.asset_materialization.metadata.items()}
        elif entry.asset_check_evaluation is not None:
            checks[entry.asset_check_evaluation.check_name] = entry.asset_check_evaluation
        elif entry.dagster_event is not None and entry.dagster_event.step_failure_data is not None:
            failures.append(_failure_text(entry.dagster_event.step_failure_data))
            failed_metadata = _failure_metadata(entry.dagster_event.step_failure_data)
            if failed_metadata and entry.step_key == "zammad_sync":
                metadata["zammad_sync"] = failed_metadata
    safety = checks.get(SYNC_PLAN_SAFETY_CHECK)
    setup = [c for c in (checks.get(name) for name in SETUP_CHECKS) if c is not None and not c.passed]
    unfit = bool(setup)  # a config or setup fault, no approval lifts it: exit 1
    if unfit:  # their own words; Dagster's "blocking asset check failed" adds nothing
        failures[:] = [f"nothing written: {c.description}" for c in setup] + [
            f for f in failures if not f.startswith("DagsterAssetCheckFailedError")
        ]
    blocked = safety is not None and not safety.passed and not unfit
    status = "blocked" if blocked else ("ok" if run.status == dg.DagsterRunStatus.SUCCESS and not unfit else "failed")
    profile = run.tags.get("dagster/partition", "")
    applied = metadata.get("zammad_sync", {})
    planned = metadata.get("sync_plan", {})
    outcome = RunOutcome(
        profile=profile,
        run_id=run_id,
        status=status,
        trigger=trigger_of(run.tags),
        dry_run=applied.get("dry_run", planned.get("dry_run")),
        counts=_counts(applied, planned),
        plan=plan,
        changes=plan_changes(plan) if plan is not None else [],
        skipped_member_types=dict(metadata.get("entra_group_members", {}).get("member_types_skipped") or {}),
        contacts_read=int(metadata.get("entra_group_members", {}).get("contacts_read") or 0),
        stopped=applied.get("stopped") or None,
        scope=run.tags.get(TAG_SCOPE, "full"),
        targets=_story(planned, applied, blocked),
    )
    if blocked and safety is not None:
        outcome.blocked_reason = str(getattr(safety.metadata.get("summary"), "value", safety.description))
        held = int(getattr(safety.metadata.get("deactivations"), "value", 0) or 0)
        outcome.held_deactivations = held
        outcome.approve_with = f"entrasync sync --profile {profile} --approve-deactivations {held}"
    elif status == "failed":
        outcome.error = "; ".join(dict.fromkeys(failures)) or f"run ended as {run.status.value}"
    return outcome


def _story(planned: Mapping[str, Any], applied: Mapping[str, Any], blocked: bool) -> list[dict[str, Any]]:
    """The plan's per-target trace with each target's write outcome from the apply."""
    writes = applied.get(TARGETS_WRITES) or {}
    story = []
    for step in planned.get(TARGETS_TRACE) or []:
        key, decision = step["entra_key"], step["decision"]
        if decision in {a.value for a in WRITE_ACTIONS}:
            write = writes.get(key) or ("blocked: nothing written" if blocked else "not written")
        else:
            write = "nothing to write"
        story.append({**step, "write": write})
    return story


def _counts(applied: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, int]:
    """The apply's counts; without an apply (blocked, failed early), nothing written: the plan's rest."""
    if applied:
        return {k: int(applied.get(k, 0) or 0) for k in COUNT_COLUMNS}
    counts = dict.fromkeys(COUNT_COLUMNS, 0)
    for action in (Action.NOOP, *HELD_ACTIONS):
        counts[COUNT_NAMES[action]] = int(planned.get(action.value, 0) or 0)
    counts["drift"] = int(planned.get("drift", 0) or 0)
    return counts


def _failure_text(data: Any) -> str:
    """The user-facing cause of a step failure (our exception's message, not Dagster's wrapper)."""
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    wrappers = ("DagsterExecutionStepExecutionError", "RetryRequestedFromPolicy")  # retries used up: say why
    while error is not None and error.cause is not None and error.cls_name in wrappers:
        error = error.cause
    if error is None:
        return "step failed"
    if error.cls_name == "DagsterExecutionInterruptedError":
        return INTERRUPTED_TEXT
    return f"{error.cls_name}: {error.message.split(': ', 1)[-1].strip()}" if error.cls_name else error.message.strip()


def _failure_metadata(data: Any) -> dict[str, Any]:
    if data.user_failure_data is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in (data.user_failure_data.metadata or {}).items()}
