"""One run per profile: the lease in the audit database, on SQLite and PostgreSQL.

A second run waits and then fails naming the holder; a crashed holder's lease lapses; a holder
whose run has ended frees it at once; two runs racing for a free lease never both win.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from entrasync_pipeline.audit import AuditStore
from entrasync_pipeline.lease import Lease, LeaseOptions, ProfileBusy, lease_table
from entrasync_pipeline_tests.test_audit import store  # noqa: F401  (the SQLite/PostgreSQL fixture)

QUICK = LeaseOptions(ttl_s=30, wait_s=0.5, poll_s=0.05)


def _lease(store: AuditStore, run_id: str, options: LeaseOptions = QUICK, **kw: object) -> Lease:  # noqa: F811
    return Lease(store.engine, "helpdesk", run_id, options, **kw)


def test_a_second_run_waits_then_fails_naming_the_holder(store: AuditStore) -> None:  # noqa: F811
    first = _lease(store, "run-a")
    first.acquire()
    started = time.monotonic()
    with pytest.raises(ProfileBusy, match=r"profile helpdesk is being synced by run run-a \(host .+, pid \d+, since "):
        _lease(store, "run-b").acquire()
    assert time.monotonic() - started >= QUICK.wait_s


def test_the_same_run_takes_its_own_lease_again(store: AuditStore) -> None:  # noqa: F811
    first = _lease(store, "run-a")
    first.acquire()
    since = first.holder()["since"]
    _lease(store, "run-a").acquire()  # the run's next step
    assert first.holder()["run_id"] == "run-a" and first.holder()["since"] == since


def test_a_released_lease_is_free_at_once(store: AuditStore) -> None:  # noqa: F811
    first = _lease(store, "run-a")
    first.acquire()
    first.release()
    _lease(store, "run-b").acquire()
    assert first.holder()["run_id"] == "run-b"


def test_a_crashed_holders_lease_lapses(store: AuditStore) -> None:  # noqa: F811
    _lease(store, "run-dead", LeaseOptions(ttl_s=5, wait_s=0)).acquire()
    with store.engine.begin() as conn:  # the holder stopped renewing 10 s ago
        conn.execute(sa.update(lease_table).values(expires=datetime.now(timezone.utc) - timedelta(seconds=10)))
    _lease(store, "run-b", LeaseOptions(ttl_s=5, wait_s=0)).acquire()


def test_a_holder_whose_run_ended_frees_it_even_before_expiry(store: AuditStore) -> None:  # noqa: F811
    _lease(store, "run-failed").acquire()
    ended = {"run-failed": False}
    _lease(store, "run-b", alive=lambda run: ended.get(run)).acquire()


def test_a_holder_that_still_runs_is_never_taken_over(store: AuditStore) -> None:  # noqa: F811
    _lease(store, "run-a").acquire()
    with pytest.raises(ProfileBusy):
        _lease(store, "run-b", alive=lambda run: True).acquire()


def test_held_renews_in_the_background_and_releases_when_the_block_fails(store: AuditStore) -> None:  # noqa: F811
    lease = _lease(store, "run-a", LeaseOptions(ttl_s=6, wait_s=0))
    with lease.held():
        first = lease.holder()["expires"]
        time.sleep(2.5)  # a beat every ttl/3 = 2 s
        assert lease.holder()["expires"] > first
    assert lease.holder()["run_id"] == "run-a"  # kept for the run's next step
    with pytest.raises(RuntimeError), lease.held():
        raise RuntimeError("step failed")
    assert lease.holder() is None


def test_two_runs_racing_for_a_free_lease_never_both_win(store: AuditStore) -> None:  # noqa: F811
    winners: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)
    _lease(store, "setup")  # the table exists before the race, as after any earlier run

    def race(run_id: str) -> None:
        engine = sa.create_engine(
            store.engine.url.render_as_string(hide_password=False),
            connect_args={"timeout": 30} if store.engine.dialect.name == "sqlite" else {},
        )
        try:
            lease = Lease(engine, "helpdesk", run_id, LeaseOptions(ttl_s=30, wait_s=0))
            barrier.wait(timeout=30)
            lease.acquire()
            winners.append(run_id)
        except ProfileBusy:
            pass
        except BaseException as exc:  # reported below, never a hang
            errors.append(exc)
            barrier.abort()
        finally:
            engine.dispose()

    threads = [threading.Thread(target=race, args=(f"run-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(winners) == 1
