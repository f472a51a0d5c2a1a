"""The append-only audit store (SQLAlchemy): one row per action attempt, for compliance.

SQLite under DAGSTER_HOME by default, any SQLAlchemy URL (PostgreSQL) by config. The store only
inserts and reads the log; a database trigger refuses UPDATE and DELETE on both dialects, so even a
bug elsewhere cannot rewrite history. Beside the log, the same database keeps the profile's current
Entra ↔ Zammad links (``entrasync_links``, replaced by each full run) and since when users have been
missing from the scope (``entrasync_missing``, for the grace period), which are state, not history.
Exports are safe to open in a spreadsheet: cells that start with = + - @ (or a tab/CR) are prefixed
with a quote (OWASP CSV injection).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from entrasync_pipeline.settings import SecretValue

metadata = MetaData()
audit_log = Table(
    "entrasync_audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("profile", String(64), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False, index=True),
    Column("action", String(32), nullable=False, index=True),
    Column("outcome", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("entra_key", String(64), index=True),
    Column("upn", String(512)),
    Column("email", String(512), index=True),
    Column("zammad_id", Integer, index=True),
    Column("changes", JSON),
    Column("reason", Text),
    Column("error", Text),
    Column("attempt_id", String(36), index=True),
)

# Not part of the audit trail: the Entra ↔ Zammad links the profile's latest full run saw (every
# Entra member in scope and every managed Zammad user, with its Zammad id when it has one). The
# change feed asks it whether a changed user concerns the profile, and a targeted run where to find
# a user in Zammad without listing Zammad. Replaced by each full run, so it is rebuilt from the
# directories themselves, whatever the audit log holds.
links = Table(
    "entrasync_links",
    metadata,
    Column("profile", String(64), primary_key=True),
    Column("entra_key", String(64), primary_key=True),
    Column("zammad_id", Integer),
)
# One row per profile: a digest of its links, so a full run that changed none skips reading them.
links_digest = Table(
    "entrasync_links_digest",
    metadata,
    Column("profile", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
)

# State too: since when each managed user of the profile has been missing from the scope (left the
# groups, or out of scope by a rule), for the grace period (``grace_days``). A user gets a row when a
# run first finds them missing and loses it once any other decision is made about them (back in
# scope, deactivated and gone from the candidates). Kept here, not in memory: a grace period spans days
# of runs, processes and hosts.
missing = Table(
    "entrasync_missing",
    metadata,
    Column("profile", String(64), primary_key=True),
    Column("entra_key", String(64), primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False),
)

# "started" is the write-ahead intent recorded before a write; every intent gets exactly one final
# row with the same attempt_id: done, failed, skipped, or (found unfinished by a later run) interrupted.
OUTCOMES = ("started", "done", "failed", "would", "skipped", "blocked", "interrupted", "info")
FINAL_OUTCOMES = ("done", "failed", "skipped", "interrupted")
WRITTEN_ACTIONS = ("create", "update", "reactivate", "relink", "deactivate")  # writes that change a user
_CHUNK = 500  # ids per IN (...) clause
_INSERT_CHUNK = 5000  # link rows per INSERT
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS entrasync_audit_no_update BEFORE UPDATE ON entrasync_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS entrasync_audit_no_delete BEFORE DELETE ON entrasync_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
]
_PG_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION entrasync_audit_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS entrasync_audit_no_change ON entrasync_audit_log",
    "CREATE TRIGGER entrasync_audit_no_change BEFORE UPDATE OR DELETE ON entrasync_audit_log "
    "FOR EACH ROW EXECUTE FUNCTION entrasync_audit_append_only()",
]


@dataclass
class AuditRow:
    run_id: str
    profile: str
    action: str
    outcome: str
    dry_run: bool = False
    entra_key: str | None = None
    upn: str | None = None
    email: str | None = None
    zammad_id: int | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    attempt_id: str | None = None


@dataclass(frozen=True)
class AuditFilter:
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None
    action: str | None = None
    profile: str | None = None
    limit: int | None = None


class AuditStore:
    def __init__(self, url: str | SecretValue) -> None:
        raw = url.reveal() if isinstance(url, SecretValue) else url
        self.engine: Engine = create_engine(raw, future=True, pool_pre_ping=True)
        # Where the store is, for people: the URL with any password masked.
        self.location = self.engine.url.render_as_string(hide_password=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.Lock()
        create_tables(metadata, self.engine)
        self._install_triggers()

    def _install_triggers(self) -> None:
        statements = {"sqlite": _SQLITE_TRIGGERS, "postgresql": _PG_TRIGGERS}.get(self.engine.dialect.name, [])
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))

    def close(self) -> None:
        self.engine.dispose()

    def record(self, rows: Iterable[AuditRow]) -> int:
        values = [_to_db(r) for r in rows]
        if not values:
            return 0
        with self._lock, self.engine.begin() as conn:
            conn.execute(insert(audit_log), values)
        return len(values)

    def unfinished_attempts(self, profile: str) -> list[dict[str, Any]]:
        """Intents ("started") of this profile that never got a final row: the process died."""
        final = audit_log.alias("final")
        finished = (
            select(final.c.seq)
            .where(final.c.attempt_id == audit_log.c.attempt_id, final.c.outcome != "started")
            .exists()
        )
        stmt = (
            select(audit_log)
            .where(audit_log.c.profile == profile, audit_log.c.outcome == "started", ~finished)
            .order_by(audit_log.c.seq)
        )
        with self.engine.connect() as conn:
            return [_from_db(dict(r._mapping)) for r in conn.execute(stmt)]

    def known_users(self, profile: str, entra_keys: Iterable[str]) -> dict[str, int | None]:
        """Which of these Entra ids concern this profile, each with its Zammad id when known.

        Known: seen by the latest full run (``entrasync_links``) or decided about since (the audit
        log: every create, adoption, change, skip and conflict has a row). The newest audit row
        with a Zammad id wins, then the link; an id without a Zammad user maps to None.
        """
        keys = sorted(set(entra_keys))
        known: dict[str, int | None] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                linked = select(links.c.entra_key, links.c.zammad_id).where(
                    links.c.profile == profile, links.c.entra_key.in_(chunk)
                )
                known.update({key: zammad_id for key, zammad_id in conn.execute(linked)})
                audited = (
                    select(audit_log.c.entra_key, audit_log.c.zammad_id)
                    .where(audit_log.c.profile == profile, audit_log.c.entra_key.in_(chunk))
                    .order_by(audit_log.c.seq)
                )
                for key, zammad_id in conn.execute(audited):
                    known[key] = zammad_id if zammad_id is not None else known.get(key)
        return known

    def email_neighbours(self, profile: str, entra_keys: Iterable[str]) -> set[str]:
        """Entra ids that ever had an email one of these ids had (audit rows of this profile).

        One user's decision can hang on another's email (a conflict on an address, a leaver kept
        because someone else's conflict holds their Zammad user): a targeted run decides them together.
        """
        keys = sorted(set(entra_keys))
        neighbours: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                emails = (
                    select(audit_log.c.email)
                    .where(
                        audit_log.c.profile == profile, audit_log.c.entra_key.in_(chunk), audit_log.c.email.is_not(None)
                    )
                    .distinct()
                )
                shared = select(audit_log.c.entra_key).where(
                    audit_log.c.profile == profile, audit_log.c.email.in_(emails), audit_log.c.entra_key.is_not(None)
                )
                neighbours.update(key for (key,) in conn.execute(shared.distinct()))
        return neighbours - set(keys)

    def replace_links(self, profile: str, current: dict[str, int | None]) -> int:
        """Make the profile's links exactly ``current``; writes only what changed. Returns that count.

        The usual nightly run changes nothing: comparing a digest costs one row instead of reading
        every link back.
        """
        digest = hashlib.sha256(
            "\n".join(f"{k}\t{'' if z is None else z}" for k, z in sorted(current.items())).encode()
        ).hexdigest()
        with self._lock, self.engine.begin() as conn:
            known = conn.execute(select(links_digest.c.digest).where(links_digest.c.profile == profile)).scalar()
            if known == digest:
                return 0
            conn.execute(links_digest.delete().where(links_digest.c.profile == profile))
            conn.execute(insert(links_digest), [{"profile": profile, "digest": digest}])
            stored = dict(
                conn.execute(select(links.c.entra_key, links.c.zammad_id).where(links.c.profile == profile)).all()
            )
            stale = sorted(k for k, z in stored.items() if k not in current or current[k] != z)
            fresh = [k for k, z in current.items() if k not in stored or stored[k] != z]
            for start in range(0, len(stale), _CHUNK):
                chunk = stale[start : start + _CHUNK]
                conn.execute(links.delete().where(links.c.profile == profile, links.c.entra_key.in_(chunk)))
            for start in range(0, len(fresh), _INSERT_CHUNK):  # rows built per chunk: a first run adds 100,000
                rows = [
                    {"profile": profile, "entra_key": k, "zammad_id": current[k]}
                    for k in fresh[start : start + _INSERT_CHUNK]
                ]
                conn.execute(insert(links), rows)
        return len(stale) + len(fresh) - len(set(stale) & set(fresh))

    def last_written(self, profile: str, zammad_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """What this profile's real runs last wrote to each of these Zammad users: field → value, and
        ``active``, folded from the writes that succeeded (rows ``done``, not dry runs). A create
        leaves the user active. Users never written have no entry: their hand edits are not judged.
        """
        ids = sorted(set(zammad_ids))
        written: dict[int, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                stmt = (
                    select(audit_log.c.zammad_id, audit_log.c.action, audit_log.c.changes)
                    .where(
                        audit_log.c.profile == profile,
                        audit_log.c.zammad_id.in_(ids[start : start + _CHUNK]),
                        audit_log.c.outcome == "done",
                        audit_log.c.dry_run.is_(False),
                        audit_log.c.action.in_(WRITTEN_ACTIONS),
                    )
                    .order_by(audit_log.c.seq)
                )
                for zammad_id, action, changes in conn.execute(stmt):
                    values = written.setdefault(int(zammad_id), {})
                    if action == "create":
                        values["active"] = True
                    values.update({k: v[1] for k, v in (changes or {}).items() if isinstance(v, list) and len(v) == 2})
        return written

    def missing_since(self, profile: str) -> dict[str, datetime]:
        """Since when each user the profile's runs found missing from the scope has been missing (UTC)."""
        stmt = select(missing.c.entra_key, missing.c.since).where(missing.c.profile == profile)
        with self.engine.connect() as conn:
            return {key: _utc(since) for key, since in conn.execute(stmt)}

    def update_missing(self, profile: str, ledger: dict[str, datetime], decided: Iterable[str] | None = None) -> None:
        """Make the missing users of ``decided`` (every user, when None: a full run) exactly ``ledger``.

        A targeted run decides about a few users: only their rows change.
        """
        with self._lock, self.engine.begin() as conn:
            if decided is None:
                conn.execute(missing.delete().where(missing.c.profile == profile))
            else:
                keys = sorted(set(decided) | set(ledger))
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    conn.execute(missing.delete().where(missing.c.profile == profile, missing.c.entra_key.in_(chunk)))
            rows = [{"profile": profile, "entra_key": k, "since": v} for k, v in sorted(ledger.items())]
            for start in range(0, len(rows), _INSERT_CHUNK):
                conn.execute(insert(missing), rows[start : start + _INSERT_CHUNK])

    def query(self, filters: AuditFilter = AuditFilter()) -> list[dict[str, Any]]:
        stmt = select(audit_log).order_by(audit_log.c.seq)
        if filters.run_id:
            stmt = stmt.where(audit_log.c.run_id == filters.run_id)
        if filters.profile:
            stmt = stmt.where(audit_log.c.profile == filters.profile)
        if filters.since:
            stmt = stmt.where(audit_log.c.ts >= filters.since)
        if filters.until:
            stmt = stmt.where(audit_log.c.ts < filters.until)
        if filters.action:
            stmt = stmt.where(audit_log.c.action == filters.action)
        if filters.user:
            needle = filters.user.lower()
            conditions = [
                audit_log.c.entra_key == filters.user,
                audit_log.c.email == needle,
                audit_log.c.upn == filters.user,
            ]
            if filters.user.isdigit():
                conditions.append(audit_log.c.zammad_id == int(filters.user))
            stmt = stmt.where(or_(*conditions))
        if filters.limit:
            stmt = stmt.limit(filters.limit)
        with self.engine.connect() as conn:
            return [_from_db(dict(r._mapping)) for r in conn.execute(stmt)]


def create_tables(tables: MetaData, engine: Engine) -> None:
    """Create missing tables; two processes doing it at the same moment (a first run) is not an error."""
    try:
        tables.create_all(engine)
    except (OperationalError, ProgrammingError):
        if not all(inspect(engine).has_table(name) for name in tables.tables):
            raise


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _to_db(row: AuditRow) -> dict[str, Any]:
    # A shallow copy of the fields: asdict() would deep-copy every change first, about as long as
    # the insert itself at thousands of writes; the JSON round trip makes the stored copy anyway.
    values = dict(vars(row))
    values["changes"] = json.loads(json.dumps(row.changes, default=str))
    return values


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive timestamps; every stored time is UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _from_db(row: dict[str, Any]) -> dict[str, Any]:
    ts = row["ts"]
    row["ts"] = _utc(ts).isoformat() if isinstance(ts, datetime) else ts
    return row


EXPORT_COLUMNS = (
    "seq",
    "ts",
    "run_id",
    "profile",
    "action",
    "outcome",
    "dry_run",
    "entra_key",
    "upn",
    "email",
    "zammad_id",
    "changes",
    "reason",
    "error",
    "attempt_id",
)


def spreadsheet_safe(value: Any) -> str:
    """Neutralise cells a spreadsheet would evaluate as a formula."""
    text_value = (
        ""
        if value is None
        else (json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))
    )
    return "'" + text_value if text_value.startswith(_FORMULA_START) else text_value


def export_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(c)) for c in EXPORT_COLUMNS])
    return buffer.getvalue()


def export_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(
        [{c: row.get(c) for c in EXPORT_COLUMNS} for row in rows], ensure_ascii=False, indent=2, default=str
    )
