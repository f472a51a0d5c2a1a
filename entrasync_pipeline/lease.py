"""One run per profile, whatever starts it: a lease row per profile in the audit database.

Dagster's run queue limits only the runs the daemon launches; a CLI run executes in its own
process and another host may run its own CLI. So every run that reads or writes holds the
profile's lease: one row (profile, run, host, pid, since, expires) that only its holder renews.
A run that finds the lease held waits (``lock.wait_s``) and then fails with who holds it. The
lease is free when its holder released it, when it expired (a crashed holder stops renewing
after at most ``lock.ttl_s``), or when the caller's ``alive`` says the holder's run has ended
(a finished Dagster run of the same instance, so a failed run never makes the next one wait).

Acquiring is a compare-and-set (INSERT, or UPDATE … WHERE the row is still the one we judged
free), so two runs racing for a free lease cannot both win, on SQLite or PostgreSQL. While held,
a daemon thread renews the row every third of the TTL (the only thread outside ``apply``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from entrasync_pipeline.audit import create_tables

log = logging.getLogger(__name__)

lease_metadata = MetaData()
lease_table = Table(
    "entrasync_lease",
    lease_metadata,
    Column("profile", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
)

Alive = Callable[[str], "bool | None"]  # run id -> running, ended, or None when unknown here
POLL_S = 1.0


class ProfileBusy(RuntimeError):
    """Another run holds the profile; the message says which, where and since when."""

    def __init__(self, profile: str, holder: dict[str, Any], waited_s: float) -> None:
        since = _utc(holder["since"]).strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(
            f"profile {profile} is being synced by run {holder['run_id']} (host {holder['host']}, "
            f"pid {holder['pid']}, since {since}); waited {waited_s:.0f}s"
        )
        self.holder = holder


@dataclass
class LeaseOptions:
    ttl_s: float
    wait_s: float
    poll_s: float = POLL_S


class Lease:
    """The lease of one profile, taken for one run id (re-entrant for that run id)."""

    def __init__(
        self, engine: Engine, profile: str, run_id: str, options: LeaseOptions, alive: Alive = lambda _run: None
    ) -> None:
        self.engine, self.profile, self.run_id, self.options, self.alive = engine, profile, run_id, options, alive
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.lost = False
        self.release_on_exit = False
        create_tables(lease_metadata, engine)

    # --- acquire / renew / release ------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lease or wait for it; raises ProfileBusy after ``wait_s``."""
        started = time.monotonic()
        announced = False
        while True:
            holder = self._try_take()
            if holder is None:
                return
            waited = time.monotonic() - started
            if waited >= self.options.wait_s:
                raise ProfileBusy(self.profile, holder, waited)
            if not announced:
                log.warning(
                    "profile %s is being synced by run %s (host %s); waiting up to %.0fs",
                    self.profile,
                    holder["run_id"],
                    holder["host"],
                    self.options.wait_s,
                )
                announced = True
            time.sleep(min(self.options.poll_s, max(0.0, self.options.wait_s - waited)))

    def renew(self) -> bool:
        """Push the expiry out; False when the lease is no longer ours (it lapsed and was taken)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(lease_table)
                .where(lease_table.c.profile == self.profile, lease_table.c.run_id == self.run_id)
                .values(expires=self._expiry())
            ).rowcount
        if not done and not self.lost:
            self.lost = True
            log.error(
                "run %s lost the lease of profile %s (it lapsed and another run took it)", self.run_id, self.profile
            )
        return bool(done)

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(lease_table).where(lease_table.c.profile == self.profile, lease_table.c.run_id == self.run_id)
            )

    def holder(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(lease_table).where(lease_table.c.profile == self.profile)).first()
        return dict(row._mapping) if row else None

    @contextmanager
    def held(self) -> Iterator["Lease"]:
        """Hold the lease for a block, renewed in the background; released if the block raises.

        On a normal exit the lease stays held (the run's next step needs it) unless
        ``release_on_exit`` was set; the run's last step, or the caller, releases it.
        """
        self.acquire()
        self.release_on_exit = False
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop,), daemon=True, name="entrasync-lease")
        beat.start()
        try:
            yield self
        except BaseException:
            self.release_on_exit = True
            raise
        finally:
            stop.set()
            beat.join(timeout=5)
            if self.release_on_exit:
                self.release()

    # --- internals ----------------------------------------------------------------------------
    def _try_take(self) -> dict[str, Any] | None:
        """None when the lease is now ours; otherwise the live holder."""
        holder = self.holder()
        if holder is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(lease_table).values(profile=self.profile, **self._values()))
                return None
            except IntegrityError:
                return self.holder() or {"run_id": "?", "host": "?", "pid": 0, "since": _now()}
        if holder["run_id"] != self.run_id and not self._free(holder):
            return holder
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(lease_table)
                .where(
                    lease_table.c.profile == self.profile,
                    lease_table.c.run_id == holder["run_id"],
                    lease_table.c.expires == holder["expires"],
                )
                .values(**self._values(keep_since=holder))
            ).rowcount
        if not taken:
            return self.holder() or holder  # somebody else won the race; judge again next round
        if holder["run_id"] != self.run_id:
            log.warning(
                "took over the lease of profile %s from run %s (host %s): %s",
                self.profile,
                holder["run_id"],
                holder["host"],
                self._why_free(holder),
            )
        return None

    def _free(self, holder: dict[str, Any]) -> bool:
        return _utc(holder["expires"]) <= _now() or self.alive(holder["run_id"]) is False

    def _why_free(self, holder: dict[str, Any]) -> str:
        return "its run has ended" if _utc(holder["expires"]) > _now() else "it expired (holder crashed?)"

    def _values(self, keep_since: dict[str, Any] | None = None) -> dict[str, Any]:
        same_run = keep_since is not None and keep_since["run_id"] == self.run_id
        since = keep_since["since"] if same_run else _now()
        return {
            "run_id": self.run_id,
            "host": self.host[:255],
            "pid": self.pid,
            "since": since,
            "expires": self._expiry(),
        }

    def _expiry(self) -> datetime:
        return _now() + timedelta(seconds=self.options.ttl_s)

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.options.ttl_s / 3):
            try:
                self.renew()
            except Exception as exc:  # a database hiccup: the next beat tries again
                log.warning("renewing the lease of profile %s failed: %s", self.profile, type(exc).__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
