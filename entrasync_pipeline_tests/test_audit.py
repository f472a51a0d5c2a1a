"""The audit store, on SQLite and on the machine's real PostgreSQL: append-only, filters, safe exports."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import sqlalchemy as sa

from entrasync_pipeline.audit import AuditFilter, AuditRow, AuditStore, export_csv, export_json

PG_ADMIN_URL = os.environ.get("ENTRASYNC_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> bool:
    try:
        sa.create_engine(PG_ADMIN_URL).connect().close()
        return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    if request.param == "sqlite":
        audit = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
        yield audit
        audit.close()
        return
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (.ci/run starts it)")
        pytest.skip("PostgreSQL is not reachable; CI runs these")
    name = f"entrasync_audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    audit = AuditStore(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield audit
    finally:
        audit.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def _row(**kw: object) -> AuditRow:
    base = {
        "run_id": "r1",
        "profile": "p",
        "action": "create",
        "outcome": "done",
        "entra_key": "k1",
        "upn": "a@x.example",
        "email": "a@x.example",
        "zammad_id": 7,
        "changes": {"email": [None, "a@x.example"]},
    }
    base.update(kw)
    return AuditRow(**base)  # type: ignore[arg-type]


def test_rows_round_trip_with_utc_timestamps(store: AuditStore) -> None:
    store.record([_row()])
    (row,) = store.query()
    assert row["action"] == "create" and row["changes"] == {"email": [None, "a@x.example"]}
    assert datetime.fromisoformat(row["ts"]).utcoffset() == timedelta(0)


def test_the_log_is_append_only(store: AuditStore) -> None:
    store.record([_row()])
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE entrasync_audit_log SET outcome = 'failed'"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM entrasync_audit_log"))
    assert store.query()[0]["outcome"] == "done"


def test_filters_by_run_time_user_and_action(store: AuditStore) -> None:
    now = datetime.now(timezone.utc)
    store.record(
        [
            _row(),
            _row(
                run_id="r2",
                action="deactivate",
                entra_key="k2",
                email="b@x.example",
                zammad_id=8,
                ts=now - timedelta(days=3),
            ),
        ]
    )
    assert [r["run_id"] for r in store.query(AuditFilter(run_id="r2"))] == ["r2"]
    assert [r["run_id"] for r in store.query(AuditFilter(since=now - timedelta(days=1)))] == ["r1"]
    assert [r["run_id"] for r in store.query(AuditFilter(until=now - timedelta(days=1)))] == ["r2"]
    assert [r["run_id"] for r in store.query(AuditFilter(user="B@x.example"))] == ["r2"]
    assert [r["run_id"] for r in store.query(AuditFilter(user="k1"))] == ["r1"]
    assert [r["run_id"] for r in store.query(AuditFilter(user="8"))] == ["r2"]
    assert [r["run_id"] for r in store.query(AuditFilter(action="deactivate"))] == ["r2"]


def test_csv_export_neutralises_spreadsheet_formulas(store: AuditStore) -> None:
    store.record(
        [_row(email='=HYPERLINK("http://evil")@x.example', reason="+cmd|' /C calc'!A0", upn="@SUM(1+1)", error="-2+3")]
    )
    parsed = list(csv.DictReader(io.StringIO(export_csv(store.query()))))
    assert parsed[0]["email"].startswith("'=") and parsed[0]["reason"].startswith("'+")
    assert parsed[0]["upn"].startswith("'@") and parsed[0]["error"].startswith("'-")
    assert json.loads(export_json(store.query()))[0]["email"].startswith("=")  # JSON keeps the data as is


def test_the_default_location_is_under_dagster_home(tmp_path: Path) -> None:
    from entrasync_pipeline.settings import parse_settings

    settings = parse_settings(
        {
            "profiles": {
                "p": {
                    "entra": {"tenant_id": str(uuid.uuid4()), "client_id": "c"},
                    "groups": [{"id": str(uuid.uuid4())}],
                    "zammad": {"url": "https://z.example"},
                }
            }
        }
    )
    assert (
        settings.audit_url({"DAGSTER_HOME": str(tmp_path)}).reveal() == f"sqlite:///{tmp_path / 'entrasync-audit.db'}"
    )


def _settings_with_audit(url: str | None) -> Any:
    from entrasync_pipeline.settings import parse_settings

    profile = {
        "entra": {"tenant_id": str(uuid.uuid4()), "client_id": "c"},
        "groups": [{"id": str(uuid.uuid4())}],
        "zammad": {"url": "https://z.example"},
    }
    return parse_settings({"profiles": {"p": profile}, "audit": {"url": url}})


def test_without_audit_url_or_dagster_home_every_command_refuses_and_names_both() -> None:
    from entrasync_pipeline.settings import ConfigError

    with pytest.raises(ConfigError, match="audit.url.*DAGSTER_HOME"):
        _settings_with_audit(None).audit_url({})


def test_the_audit_url_reads_its_password_from_the_environment_and_never_shows_it() -> None:
    from entrasync_pipeline.settings import ConfigError

    settings = _settings_with_audit("postgresql+psycopg2://entrasync:${AUDIT_PW}@db.example/audit")
    url = settings.audit_url({"AUDIT_PW": "s3cr3t-pw"})
    assert url.reveal() == "postgresql+psycopg2://entrasync:s3cr3t-pw@db.example/audit"
    assert "s3cr3t" not in repr(url) and "s3cr3t" not in str(url)
    with pytest.raises(ConfigError, match="AUDIT_PW"):
        settings.audit_url({})


def test_the_store_shows_where_it_is_without_the_password(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'a.db'}")
    assert store.location.endswith("a.db")
    store.close()


def test_links_are_replaced_by_each_full_run_writing_only_what_changed(store: AuditStore) -> None:
    assert store.replace_links("it", {"a": 1, "b": None, "c": 3}) == 3
    assert store.replace_links("it", {"a": 1, "b": None, "c": 3}) == 0  # an unchanged run writes nothing
    assert store.replace_links("it", {"a": 1, "b": 2, "d": None}) == 3  # b linked, c gone, d new
    assert store.replace_links("sales", {"a": 9}) == 1  # profiles never share links
    assert store.known_users("it", ["a", "b", "c", "d", "x"]) == {"a": 1, "b": 2, "d": None}
    assert store.known_users("sales", ["a", "b"]) == {"a": 9}


def test_a_user_is_known_from_the_audit_and_the_newest_zammad_id_wins(store: AuditStore) -> None:
    store.replace_links("it", {"a": 1, "b": None})
    store.record([_row(profile="it", entra_key="b", zammad_id=7), _row(profile="it", entra_key="n", zammad_id=None)])
    store.record([_row(profile="it", entra_key="a", zammad_id=5), _row(profile="it", entra_key="a", zammad_id=None)])
    assert store.known_users("it", ["a", "b", "n"]) == {"a": 5, "b": 7, "n": None}
    assert store.known_users("it", []) == {}


def test_email_neighbours_are_the_users_who_ever_shared_an_email_in_this_profile(store: AuditStore) -> None:
    store.record(
        [
            _row(profile="it", entra_key="anna", email="anna@x.example"),
            _row(profile="it", entra_key="rehire", email="anna@x.example", action="conflict", outcome="skipped"),
            _row(profile="it", entra_key="bob", email="bob@x.example"),
            _row(profile="sales", entra_key="other", email="anna@x.example"),
        ]
    )
    assert store.email_neighbours("it", ["rehire"]) == {"anna"}
    assert store.email_neighbours("it", ["anna", "rehire"]) == set()  # only others
    assert store.email_neighbours("it", ["bob"]) == set()


def test_first_missing_times_are_kept_per_profile_and_replaced_by_full_runs(store: AuditStore) -> None:
    """The grace period's memory: a full run replaces the profile's ledger, a targeted run only its users'."""
    day = datetime(2026, 12, 1, 8, 30, tzinfo=timezone.utc)
    store.update_missing("it", {"a": day, "b": day + timedelta(days=1)})
    store.update_missing("sales", {"a": day - timedelta(days=3)})
    assert store.missing_since("it") == {"a": day, "b": day + timedelta(days=1)}
    store.update_missing("it", {"c": day}, decided=["b", "x"])  # targeted: b is back, c newly missing
    assert store.missing_since("it") == {"a": day, "c": day}
    store.update_missing("it", {"c": day})  # full: a is no longer missing
    assert store.missing_since("it") == {"c": day}
    assert store.missing_since("sales") == {"a": day - timedelta(days=3)}
    assert all(t.tzinfo is not None for t in store.missing_since("it").values())


def test_what_was_last_written_folds_the_successful_real_writes_per_zammad_user(store: AuditStore) -> None:
    """The base for hand edits: dry runs, failures, blocked rows, other profiles and skips do not count."""
    store.record(
        [
            _row(
                profile="it", action="create", zammad_id=7, changes={"department": [None, "IT"], "phone": [None, "1"]}
            ),
            _row(profile="it", action="update", zammad_id=7, changes={"department": ["IT", "Sales"]}),
            _row(profile="it", action="update", zammad_id=7, outcome="failed", changes={"phone": ["1", "2"]}),
            _row(
                profile="it", action="update", zammad_id=7, dry_run=True, outcome="done", changes={"phone": ["1", "3"]}
            ),
            _row(profile="it", action="update", zammad_id=7, outcome="blocked", changes={"phone": ["1", "4"]}),
            _row(profile="it", action="skip", zammad_id=7, outcome="skipped", changes={"phone": ["1", "5"]}),
            _row(profile="sales", action="update", zammad_id=7, changes={"phone": ["1", "6"]}),
            _row(profile="it", action="deactivate", zammad_id=8, changes={"active": [True, False]}),
            _row(
                profile="it", action="relink", zammad_id=8, changes={"entra_key": ["a", "b"], "active": [False, True]}
            ),
        ]
    )
    assert store.last_written("it", [7, 8, 9]) == {
        7: {"active": True, "department": "Sales", "phone": "1"},
        8: {"active": True, "entra_key": "b"},
    }
    assert store.last_written("it", []) == {}
