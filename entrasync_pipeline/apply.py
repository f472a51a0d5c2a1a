"""Execute a sync plan against Zammad: bounded concurrency, per-user isolation, one audit row each.

Order (STYLE.md §2.7): a summary first, then creates, updates and reactivations, then
deactivations, then the final counts. Each write revalidates against live Zammad state, so a
stale plan (a re-executed old run) cannot undo newer changes, and "already in the desired state"
counts as success. A create is sent once; after an ambiguous failure (timeout, reset, 5xx) the
user is looked up by ``entra_key``, then by email, before anything is sent again. When too many
writes fail (escrow, like Entra's quarantine) the rest is not attempted. Dry run writes nothing
and records "would" rows. This module starts the only worker threads (``lease`` keeps one
heartbeat thread).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from entrasync_pipeline import group_access, organizations
from entrasync_pipeline.audit import AuditRow, AuditStore
from entrasync_pipeline.normalize import is_missing
from entrasync_pipeline.plan import (
    COUNT_COLUMNS,
    COUNT_NAMES,
    HELD_ACTIONS,
    Action,
    drift_count,
    write_layers,
    writes_of,
)
from entrasync_pipeline.zammad.errors import (
    ZammadError,
    ZammadResponseError,
    ZammadTransportError,
    ZammadValidationError,
)

log = logging.getLogger(__name__)

FLUSH_EVERY = 200


class ZammadWriter(Protocol):
    def user(self, user_id: int) -> dict[str, Any] | None: ...
    def find_by_attribute(self, field: str, value: str) -> list[dict[str, Any]]: ...
    def find_by_email(self, email: str) -> list[dict[str, Any]]: ...
    def create_user(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    def update_user(self, user_id: int, payload: dict[str, Any]) -> dict[str, Any]: ...
    def iter_organizations(self) -> Iterator[dict[str, Any]]: ...
    def create_organization(self, name: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ApplyOptions:
    run_id: str
    profile: str
    dry_run: bool
    workers: int = 8
    failure_share: float = 0.4
    failure_min_attempts: int = 20


@dataclass
class ApplyResult:
    counts: dict[str, int]
    dry_run: bool
    blocked: str | None = None
    stopped: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    min_concurrency: int | None = None

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


@dataclass
class _Outcome:
    outcome: str  # done | failed | skipped
    reason: str | None = None
    error: str | None = None
    zammad_id: int | None = None


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_COLUMNS, 0)


class _Escrow:
    """Stops the apply when the share of failed writes passes the limit (after a minimum)."""

    def __init__(self, share: float, minimum: int) -> None:
        self.share, self.minimum = share, minimum
        self.attempts = self.failures = 0
        self._lock = threading.Lock()
        self.reason: str | None = None

    def note(self, failed: bool) -> None:
        with self._lock:
            self.attempts += 1
            self.failures += int(failed)
            if self.reason is None and self.attempts >= self.minimum and self.failures / self.attempts > self.share:
                self.reason = (
                    f"apply stopped: {self.failures} of {self.attempts} writes failed "
                    f"(limit {self.share:.0%} after {self.minimum})"
                )


class _AdaptiveLimit:
    """AIMD concurrency for writes: halve on a 429, add one after a run of clean writes.

    The transport already waits out every Retry-After; this keeps the next writes from running
    straight into the same throttle, and speeds up again once the 429s stop.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = self.limit = self.lowest = maximum
        self._in_flight = self._clean = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1

    def release(self, throttled: bool) -> None:
        with self._cond:
            self._in_flight -= 1
            if throttled:
                self.limit = max(1, self.limit // 2)
                self.lowest = min(self.lowest, self.limit)
                self._clean = 0
            else:
                self._clean += 1
                if self._clean >= 2 * self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._clean = 0
            self._cond.notify_all()


class _AuditBuffer:
    def __init__(self, store: AuditStore) -> None:
        self.store, self.rows = store, []

    def add(self, row: AuditRow) -> None:
        self.rows.append(row)
        if len(self.rows) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        self.store.record(self.rows)
        self.rows = []


def _audit_row(
    plan_row: dict[str, Any],
    options: ApplyOptions,
    outcome: str,
    reason: str | None = None,
    error: str | None = None,
    zammad_id: int | None = None,
) -> AuditRow:
    zid = zammad_id if zammad_id is not None else plan_row.get("zammad_id")
    return AuditRow(
        run_id=options.run_id,
        profile=options.profile,
        action=plan_row["action"],
        outcome=outcome,
        dry_run=options.dry_run,
        entra_key=plan_row.get("entra_key"),
        upn=plan_row.get("upn"),
        email=plan_row.get("email"),
        zammad_id=None if is_missing(zid) else int(zid),
        changes=plan_row.get("changes") or {},
        reason=reason or plan_row.get("reason"),
        error=error,
        attempt_id=plan_row.get("attempt_id"),
    )


def apply_plan(
    plan: pd.DataFrame,
    writer: ZammadWriter,
    audit: AuditStore,
    options: ApplyOptions,
    blocked: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ApplyResult:
    """Write the plan (or record what would be written); returns the counts."""
    counts = empty_counts()
    noop = plan["action"] == Action.NOOP.value if not plan.empty else pd.Series(dtype=bool)
    counts["unchanged"] = int(noop.sum())
    counts["drift"] = drift_count(plan)
    rows = plan[~noop].to_dict("records") if counts["unchanged"] else plan.to_dict("records")
    buffer = _AuditBuffer(audit)
    result = ApplyResult(counts, options.dry_run, blocked=blocked)
    for row in rows:
        action = Action(row["action"])
        if action in HELD_ACTIONS:  # nothing to write; audited with the reason
            counts[COUNT_NAMES[action]] += 1
            buffer.add(_audit_row(row, options, "skipped"))
    writes = [
        r for r in rows if Action(r["action"]) in (Action.CREATE, Action.UPDATE, Action.REACTIVATE, Action.RELINK)
    ]
    deactivations = [r for r in rows if r["action"] == Action.DEACTIVATE.value]
    _log_summary(plan, options, blocked)
    if not blocked:  # the organizations the members need exist before their writes
        writes = _with_organizations(writes, writer, buffer, options, counts)
    if blocked or options.dry_run:
        outcome = "blocked" if blocked else "would"
        for row in writes + deactivations:
            buffer.add(_audit_row(row, options, outcome, reason=blocked or row.get("reason")))
            if not blocked:
                counts[COUNT_NAMES[Action(row["action"])]] += 1
        buffer.flush()
        return result
    careful = _close_interrupted(audit, options)
    escrow = _Escrow(options.failure_share, options.failure_min_attempts)
    limit = _AdaptiveLimit(options.workers)
    total, finished = len(writes) + len(deactivations), [0]

    def tick() -> None:
        finished[0] += 1
        if progress is not None:
            progress(finished[0], total)

    for phase in (*write_layers(writes), deactivations):  # an address is freed before another user takes it
        _run_phase(phase, writer, options, escrow, buffer, result, careful, limit, tick)
    result.stopped = escrow.reason
    result.min_concurrency = limit.lowest
    buffer.flush()
    log.info("apply finished for %s: %s", options.profile, counts)
    return result


ORGANIZATION_ACTION = "organization"  # the audit's action for an organization entrasync created


def recorded_counts(rows: Iterable[Mapping[str, Any]], plan: pd.DataFrame) -> dict[str, int]:
    """The counts of an apply that did not finish (Ctrl-C, a stop request), from its audit rows.

    ``rows``: the run's audit rows. They are what really happened, counted as ``apply_plan``
    counts them: a write recorded done (or "would", in a dry run), failed or skipped. A write
    whose outcome was not recorded yet is not counted: it stays an intent, and the profile's
    next run records it as interrupted and re-plans it. Unchanged and drift come from the plan.
    """
    counts = empty_counts()
    if not plan.empty:
        counts["unchanged"] = int((plan["action"] == Action.NOOP.value).sum())
        counts["drift"] = drift_count(plan)
    actions = {a.value: a for a in Action}
    for row in rows:
        outcome, action = row.get("outcome"), actions.get(str(row.get("action")))
        if row.get("action") == ORGANIZATION_ACTION:
            counts["organizations_created"] += int(outcome in ("done", "would"))
        elif action is None or action not in COUNT_NAMES:
            continue  # an approval or another note: no write
        elif outcome in ("done", "would") or (outcome == "skipped" and action in HELD_ACTIONS):
            counts[COUNT_NAMES[action]] += 1
        elif outcome == "failed":
            counts["failed"] += 1
        elif outcome == "skipped":  # held back by the escrow
            counts["skipped"] += 1
    return counts


def _with_organizations(
    writes: list[dict[str, Any]],
    writer: ZammadWriter,
    buffer: _AuditBuffer,
    options: ApplyOptions,
    counts: dict[str, int],
) -> list[dict[str, Any]]:
    """Create the organizations the writes name and Zammad lacks (read live: another run may have
    created one since the plan), one audit row each; the writes then carry their ids. A member whose
    organization could not be created is written without it, the reason saying why (next run retries).
    """
    wanted = organizations.names_to_create(r["payload"] for r in writes)
    if not wanted:
        return writes
    if options.dry_run:
        for name in wanted.values():
            buffer.add(_organization_row(options, "would", name))
        counts["organizations_created"] += len(wanted)
        return writes
    ids = organizations.index(writer.iter_organizations())
    errors: dict[str, str] = {}
    for key, name in wanted.items():
        if key in ids:
            continue
        try:
            created = writer.create_organization(name)
        except ZammadError as exc:  # a 422 "taken": created meanwhile in another spelling; looked up below
            errors[key] = str(exc)
            continue
        ids[key] = int(created["id"])
        counts["organizations_created"] += 1
        buffer.add(_organization_row(options, "done", name, f"organization created (id {ids[key]})"))
    if any(key not in ids for key in errors):
        ids = {**organizations.index(writer.iter_organizations()), **ids}
    for key in [k for k in errors if k not in ids]:
        buffer.add(_organization_row(options, "failed", wanted[key], error=errors[key]))
        log.warning("organization %r not created: %s", wanted[key], errors[key])
    return [_organization_resolved(r, ids, errors) for r in writes]


def _organization_resolved(row: dict[str, Any], ids: dict[str, int], errors: dict[str, str]) -> dict[str, Any]:
    name = (row.get("payload") or {}).get(organizations.COLUMN)
    if not name or organizations.name_key(name) in ids:
        return organizations.resolved(row, ids)
    why = f"organization {name!r} not created: {errors.get(organizations.name_key(name), 'unknown')}"
    return organizations.without(row, why)


def _organization_row(
    options: ApplyOptions, outcome: str, name: str, reason: str | None = None, error: str | None = None
) -> AuditRow:
    return AuditRow(
        run_id=options.run_id,
        profile=options.profile,
        action=ORGANIZATION_ACTION,
        outcome=outcome,
        dry_run=options.dry_run,
        changes={organizations.COLUMN: [None, name]},
        reason=reason or f"organization {name!r} is missing in Zammad",
        error=error,
    )


def _close_interrupted(audit: AuditStore, options: ApplyOptions) -> frozenset[str]:
    """Give every intent a killed run left behind its final row; return their entra_keys.

    Their actions may or may not have reached Zammad: this run re-planned from live state, and
    creates for these keys look Zammad up before sending anything.
    """
    unfinished = audit.unfinished_attempts(options.profile)
    if unfinished:
        log.warning(
            "%d writes of an earlier run were interrupted; recording them and checking before re-sending",
            len(unfinished),
        )
        audit.record(
            AuditRow(
                run_id=r["run_id"],
                profile=r["profile"],
                action=r["action"],
                outcome="interrupted",
                entra_key=r["entra_key"],
                upn=r["upn"],
                email=r["email"],
                zammad_id=r["zammad_id"],
                changes=r["changes"] or {},
                attempt_id=r["attempt_id"],
                reason=f"the process stopped before the outcome was recorded; re-planned by run {options.run_id}",
            )
            for r in unfinished
        )
    return frozenset(r["entra_key"] for r in unfinished if r.get("entra_key"))


def _log_summary(plan: pd.DataFrame, options: ApplyOptions, blocked: str | None) -> None:
    banner = "DRY RUN: " if options.dry_run else ""
    counts = plan["action"].value_counts().to_dict() if not plan.empty else {}
    log.info(
        "%schange summary for %s: %s",
        banner,
        options.profile,
        ", ".join(f"{counts.get(a.value, 0)} {a.value}" for a in Action),
    )
    if blocked:
        log.warning("apply blocked for %s: %s", options.profile, blocked)


class _Journal:
    """Write-ahead intents, recorded a chunk ahead of the workers that need them (no barrier)."""

    def __init__(self, store: AuditStore, rows: list[dict[str, Any]], options: ApplyOptions, chunk: int) -> None:
        self.store, self.rows, self.options, self.chunk = store, rows, options, chunk
        self.recorded = 0
        self._lock = threading.Lock()

    def ensure(self, index: int) -> None:
        """Make sure row ``index`` has its intent recorded, keeping one chunk recorded ahead."""
        if index + self.chunk < self.recorded:
            return  # already recorded with a chunk to spare: no lock, no wait
        with self._lock:
            while self.recorded <= index + self.chunk and self.recorded < len(self.rows):
                batch = self.rows[self.recorded : self.recorded + self.chunk]
                self.store.record(_audit_row(row, self.options, "started") for row in batch)
                self.recorded += len(batch)


def _run_phase(
    rows: list[dict[str, Any]],
    writer: ZammadWriter,
    options: ApplyOptions,
    escrow: _Escrow,
    buffer: _AuditBuffer,
    result: ApplyResult,
    careful: frozenset[str],
    limit: _AdaptiveLimit,
    tick: Callable[[], None],
) -> None:
    """Run one phase with the worker threads; every write is preceded by its recorded intent.

    The workers take the rows in order and hand each outcome to this thread, which records it.
    There is no future per row: their bookkeeping held the GIL longer than the audit rows did.
    When this thread stops early (an error, an interrupt), each worker finishes the write in its
    hands and takes no other; what was not attempted is re-planned by the next run.
    """
    if not rows:
        return
    rows = [{**row, "attempt_id": str(uuid.uuid4())} for row in rows]
    journal = _Journal(buffer.store, rows, options, max(options.workers * 16, 64))
    claims = itertools.count()  # next() on it is atomic: each row goes to exactly one worker
    outcomes: queue.SimpleQueue[tuple[int, _Outcome | BaseException]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            index = next(claims)
            if index >= len(rows):
                break
            try:
                if escrow.reason is not None:
                    outcome: _Outcome = _Outcome("skipped", reason=escrow.reason)
                else:
                    journal.ensure(index)
                    row = rows[index]
                    outcome = _limited(limit, writer, row, row.get("entra_key") in careful)
            except BaseException as exc:  # handed to the main thread, which raises it
                outcomes.put((index, exc))
                break
            outcomes.put((index, outcome))

    workers = [
        threading.Thread(target=work, name=f"entrasync-apply_{n}", daemon=True)
        for n in range(min(options.workers, len(rows)))
    ]
    for worker in workers:
        worker.start()

    def record(index: int, outcome: _Outcome) -> None:
        row = rows[index]
        if outcome.outcome == "skipped" and outcome.reason == escrow.reason and index >= journal.recorded:
            row = {k: v for k, v in row.items() if k != "attempt_id"}  # never started: no intent exists
        _finish(row, outcome, options, escrow, buffer, result)

    try:
        for done in range(1, len(rows) + 1):
            index, outcome = outcomes.get()
            if isinstance(outcome, BaseException):
                raise outcome
            record(index, outcome)
            tick()
            if done % FLUSH_EVERY == 0:
                buffer.flush()
    except BaseException:
        _stop_workers(stop, workers)
        try:  # the writes in the workers' hands finished: they are recorded too; the rest stay intents
            _drain(outcomes, record)
            buffer.flush()
        except Exception:
            log.exception("could not record the outcomes of the writes done before the stop")
        raise
    _stop_workers(stop, workers)
    buffer.flush()


def _drain(
    outcomes: "queue.SimpleQueue[tuple[int, _Outcome | BaseException]]", record: Callable[[int, _Outcome], None]
) -> None:
    """Record the outcomes still queued: a write that landed in Zammad after the stop is audited as done."""
    while True:
        try:
            index, outcome = outcomes.get_nowait()
        except queue.Empty:
            return
        if not isinstance(outcome, BaseException):
            record(index, outcome)


def _stop_workers(stop: threading.Event, workers: list[threading.Thread]) -> None:
    stop.set()
    for worker in workers:
        worker.join()


def _finish(
    row: dict[str, Any],
    outcome: _Outcome,
    options: ApplyOptions,
    escrow: _Escrow,
    buffer: _AuditBuffer,
    result: ApplyResult,
) -> None:
    failed = outcome.outcome == "failed"
    escrow.note(failed)
    if failed:
        result.counts["failed"] += 1
        if len(result.failures) < 20:
            result.failures.append(
                {
                    "action": row["action"],
                    "entra_key": row.get("entra_key"),
                    "email": row.get("email"),
                    "error": outcome.error,
                }
            )
        log.warning("%s failed for %s: %s", row["action"], row.get("email") or row.get("entra_key"), outcome.error)
    elif outcome.outcome == "done":
        result.counts[COUNT_NAMES[Action(row["action"])]] += 1
    else:
        result.counts["skipped"] += 1
    if row["action"] == Action.DEACTIVATE.value and outcome.outcome == "done":
        log.warning("deactivated Zammad user #%s (%s)", outcome.zammad_id or row.get("zammad_id"), row.get("email"))
    buffer.add(_audit_row(row, options, outcome.outcome, outcome.reason, outcome.error, outcome.zammad_id))


def _limited(limit: _AdaptiveLimit, writer: ZammadWriter, row: dict[str, Any], careful: bool) -> _Outcome:
    limit.acquire()
    transport = getattr(writer, "transport", None)
    throttles = 0
    try:
        return _execute(row, writer, careful)
    finally:
        if transport is not None:
            throttles = transport.take_thread_throttles()
        limit.release(throttled=throttles > 0)


def _execute(row: dict[str, Any], writer: ZammadWriter, careful: bool = False) -> _Outcome:
    """One action; never raises (per-user isolation). ``careful``: look before creating."""
    handler: Callable[[dict[str, Any], ZammadWriter], _Outcome] = {
        Action.CREATE.value: _create_carefully if careful else _create,
        Action.UPDATE.value: _update,
        Action.REACTIVATE.value: _update,
        Action.RELINK.value: _update,
        Action.DEACTIVATE.value: _deactivate,
    }[row["action"]]
    try:
        return handler(row, writer)
    except ZammadError as exc:
        return _Outcome("failed", error=str(exc))
    except Exception as exc:  # an unexpected bug affects one user, not the run
        log.exception("unexpected error applying %s", row["action"])
        return _Outcome("failed", error=f"unexpected {type(exc).__name__}")


# --- the actions --------------------------------------------------------------------------------
def _existing(row: dict[str, Any], writer: ZammadWriter) -> dict[str, Any] | None:
    """The Zammad user this Entra user already has (by entra_key, then by an unclaimed email)."""
    hits = writer.find_by_attribute("entra_key", row["entra_key"])
    if hits:
        return hits[0]
    if row.get("email"):
        for hit in writer.find_by_email(row["email"]):
            if not hit.get("entra_key") or hit.get("entra_key") == row["entra_key"]:
                return hit
    return None


def _create(row: dict[str, Any], writer: ZammadWriter) -> _Outcome:
    payload = dict(row["payload"])
    try:
        created = writer.create_user(payload)
    except ZammadValidationError:
        # Refused, e.g. the email exists: a stale plan or a concurrent run created it already.
        existing = _existing(row, writer)
        if existing is None:
            raise
        return _converge(row, existing, writer, "already existed; brought to the desired state")
    except (ZammadTransportError, ZammadResponseError) as exc:
        if not getattr(exc, "ambiguous", False):
            raise
        existing = _existing(row, writer)  # look before sending again: never a blind retry
        if existing is not None:
            return _converge(row, existing, writer, "confirmed after an ambiguous failure")
        # Not there: send once more, but not before the server's Retry-After (a 503 may carry one).
        time.sleep(getattr(exc, "retry_after_s", None) or 0)
        created = writer.create_user(payload)
    return _verify_created(row, created)


def _create_carefully(row: dict[str, Any], writer: ZammadWriter) -> _Outcome:
    """A create an interrupted run may already have sent: look it up first."""
    existing = _existing(row, writer)
    if existing is not None:
        return _converge(row, existing, writer, "found after an interrupted run")
    return _create(row, writer)


def _verify_created(row: dict[str, Any], created: dict[str, Any]) -> _Outcome:
    if created.get("entra_key") != row["entra_key"]:
        return _Outcome(
            "failed",
            zammad_id=created.get("id"),
            error="Zammad did not store entra_key (custom attribute missing or not migrated?): "
            "run 'entrasync zammad-setup'",
        )
    return _Outcome("done", zammad_id=int(created["id"]))


def _converge(row: dict[str, Any], live: dict[str, Any], writer: ZammadWriter, note: str) -> _Outcome:
    payload = {k: v for k, v in row["payload"].items() if not _same(live.get(k), v)}
    if payload:
        live = writer.update_user(int(live["id"]), payload)
    missing = [k for k, v in row["payload"].items() if not _same(live.get(k), v)]
    if missing:
        return _Outcome("failed", zammad_id=int(live["id"]), error=f"Zammad did not store {', '.join(missing)}")
    return _Outcome("done", reason=note, zammad_id=int(live["id"]))


def _same(current: Any, desired: Any) -> bool:
    if isinstance(desired, dict):  # group_ids: the same access whatever the key types and verb order
        return group_access.same(current, desired)
    if isinstance(desired, list):
        return sorted(current or []) == sorted(desired)
    if isinstance(desired, bool):
        return bool(current) is desired
    return ("" if current is None else str(current)) == ("" if desired is None else str(desired))


def _revalidate(row: dict[str, Any], writer: ZammadWriter) -> tuple[dict[str, Any] | None, _Outcome | None]:
    live = writer.user(int(row["zammad_id"]))
    if live is None:
        return None, _Outcome("failed", error=f"Zammad user #{row['zammad_id']} no longer exists")
    planned_key = row.get("entra_key")
    live_key = live.get("entra_key") or ""
    relinked_from = (row.get("changes") or {}).get("entra_key", [None])[0] if row["action"] == Action.RELINK else None
    if live_key and planned_key and live_key not in (planned_key, relinked_from):
        return None, _Outcome("skipped", reason="changed since the plan was made (entra_key differs); re-plan")
    return live, None


def _update(row: dict[str, Any], writer: ZammadWriter) -> _Outcome:
    live, problem = _revalidate(row, writer)
    if problem:
        return problem
    assert live is not None
    if all(_same(live.get(k), v) for k, v in row["payload"].items()):
        return _Outcome("done", reason="already in the desired state", zammad_id=int(live["id"]))
    return _converge(row, live, writer, row.get("reason") or "")


def _deactivate(row: dict[str, Any], writer: ZammadWriter) -> _Outcome:
    live, problem = _revalidate(row, writer)
    if problem:
        return problem
    assert live is not None
    if not live.get("active"):
        return _Outcome("done", reason="already inactive", zammad_id=int(live["id"]))
    writer.update_user(int(live["id"]), {"active": False})
    return _Outcome("done", zammad_id=int(live["id"]))


def example_changes(plan: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    """A few rows per write action, for notifications and previews."""
    if plan.empty or limit <= 0:
        return []
    return writes_of(plan).groupby("action", sort=False).head(max(1, limit // 2)).head(limit).to_dict("records")
