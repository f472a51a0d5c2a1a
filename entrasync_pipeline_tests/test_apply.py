"""apply_plan against the sandbox Zammad: order, isolation, revalidation, ambiguity, escrow, dry run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from entrasync_pipeline import steps
from entrasync_pipeline.apply import ApplyOptions, apply_plan
from entrasync_pipeline.audit import AuditFilter, AuditStore
from entrasync_pipeline.plan import PLAN_COLUMNS
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline_tests.conftest import Sandbox


def _create_row(n: int, **payload: object) -> dict:
    key = f"00000000-0000-4000-8000-{n:012d}"
    body = {
        "email": f"user{n}@contoso.example",
        "firstname": "User",
        "lastname": str(n),
        "entra_key": key,
        "entra_object_type": "user",
        "entrasync_profile": "sandbox",
        **payload,
    }
    return {
        "action": "create",
        "entra_key": key,
        "zammad_id": None,
        "email": body["email"],
        "upn": body["email"],
        "changes": {k: [None, v] for k, v in body.items()},
        "payload": body,
        "reason": "new member",
    }


def _plan(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(PLAN_COLUMNS)).astype({"zammad_id": "Int64"})


@pytest.fixture
def audit(tmp_path: Path) -> AuditStore:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    yield store
    store.close()


def _final(audit: AuditStore, **filters: object) -> list[dict]:
    """Final rows only; and every write-ahead intent must have exactly one of them."""
    rows = audit.query(AuditFilter(**filters))
    started = [r["attempt_id"] for r in rows if r["outcome"] == "started"]
    finals = [r["attempt_id"] for r in rows if r["outcome"] != "started" and r["attempt_id"]]
    assert sorted(started) == sorted(finals)
    return [r for r in rows if r["outcome"] != "started"]


def _options(**kw: object) -> ApplyOptions:
    return ApplyOptions(**{"run_id": "run-1", "profile": "sandbox", "dry_run": False, "workers": 4, **kw})


def test_one_bad_record_never_stops_the_others(ready_profile: ProfileRuntime, audit: AuditStore) -> None:
    rows = [_create_row(i) for i in range(5)] + [_create_row(9, entra_key="k" * 65)]
    rows[-1]["entra_key"] = "k" * 65
    result = apply_plan(_plan(*rows), ready_profile.zammad, audit, _options())
    assert result.counts["created"] == 5 and result.failed == 1
    failed = _final(audit, run_id="run-1")
    outcomes = sorted(r["outcome"] for r in failed)
    assert outcomes == ["done"] * 5 + ["failed"]
    assert "longer than the allowed length 64" in next(r["error"] for r in failed if r["outcome"] == "failed")


def test_a_create_whose_answer_was_lost_is_confirmed_not_duplicated(
    sandbox: Sandbox, ready_profile: ProfileRuntime, audit: AuditStore
) -> None:
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 1.0, "truncate": True})
    result = apply_plan(_plan(_create_row(1)), ready_profile.zammad, audit, _options())
    assert result.counts["created"] == 1 and result.failed == 0
    assert sandbox.stats("zammad")["requests"]["POST /api/v1/users"] == 1
    users = [u for u in sandbox.state("zammad")["users"] if u["email"] == "user1@contoso.example"]
    assert len(users) == 1
    assert _final(audit)[0]["reason"] == "confirmed after an ambiguous failure"


def test_a_create_that_failed_before_reaching_zammad_is_sent_again_after_a_lookup(
    sandbox: Sandbox, ready_profile: ProfileRuntime, audit: AuditStore
) -> None:
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 0.5, "statuses": [503]}, seed=1)
    result = apply_plan(_plan(*[_create_row(i) for i in range(6)]), ready_profile.zammad, audit, _options())
    emails = [u["email"] for u in sandbox.state("zammad")["users"]]
    assert len(emails) == len(set(emails))
    assert result.counts["created"] + result.failed == 6 and result.counts["created"] >= 4


def test_a_stale_plan_does_not_undo_newer_state(
    sandbox: Sandbox, ready_profile: ProfileRuntime, audit: AuditStore
) -> None:
    zammad = ready_profile.zammad
    user = zammad.create_user({"email": "stale@contoso.example", "entra_key": "kk", "entrasync_profile": "sandbox"})
    zammad.update_user(user["id"], {"active": False})
    deactivate = {
        "action": "deactivate",
        "entra_key": "kk",
        "zammad_id": user["id"],
        "email": user["email"],
        "upn": None,
        "changes": {"active": [True, False]},
        "payload": {"active": False},
        "reason": "left",
    }
    relinked = {**deactivate, "action": "update", "entra_key": "another", "payload": {"department": "X"}}
    result = apply_plan(_plan(deactivate), zammad, audit, _options())
    assert result.counts["deactivated"] == 1 and _final(audit)[-1]["reason"] == "already inactive"
    result = apply_plan(_plan(relinked), zammad, audit, _options(run_id="run-2"))
    assert result.counts["skipped"] == 1 and zammad.user(user["id"])["department"] is None


def test_creates_and_updates_run_before_deactivations(ready_profile: ProfileRuntime, audit: AuditStore) -> None:
    zammad = ready_profile.zammad
    leaver = zammad.create_user({"email": "leaver@contoso.example", "entra_key": "lk", "entrasync_profile": "sandbox"})
    deactivate = {
        "action": "deactivate",
        "entra_key": "lk",
        "zammad_id": leaver["id"],
        "email": leaver["email"],
        "upn": None,
        "changes": {"active": [True, False]},
        "payload": {"active": False},
        "reason": "left",
    }
    apply_plan(_plan(deactivate, _create_row(1), _create_row(2)), zammad, audit, _options(workers=1))
    actions = [r["action"] for r in _final(audit)]
    assert actions == ["create", "create", "deactivate"]


def test_escrow_stops_the_apply_when_too_many_writes_fail(
    sandbox: Sandbox, ready_profile: ProfileRuntime, audit: AuditStore
) -> None:
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 1.0, "statuses": [500]})
    rows = [_create_row(i) for i in range(60)]
    result = apply_plan(_plan(*rows), ready_profile.zammad, audit, _options(failure_min_attempts=20, workers=2))
    assert result.stopped and "apply stopped" in result.stopped
    assert 20 <= result.failed < 60 and result.failed + result.counts["skipped"] == 60
    assert {r["outcome"] for r in _final(audit)} == {"failed", "skipped"}


def test_dry_run_writes_nothing_and_records_would(
    sandbox: Sandbox, ready_profile: ProfileRuntime, audit: AuditStore
) -> None:
    before = sandbox.stats("zammad")["total"]
    result = apply_plan(_plan(_create_row(1), _create_row(2)), ready_profile.zammad, audit, _options(dry_run=True))
    assert result.counts["created"] == 2 and result.dry_run
    assert sandbox.stats("zammad")["total"] == before
    assert {r["outcome"] for r in audit.query()} == {"would"} and all(r["dry_run"] for r in audit.query())


def test_a_missing_attribute_stops_before_any_write(profile: ProfileRuntime) -> None:
    zammad = steps.read_zammad_users(profile)
    (problem,) = steps.entra_attribute_problems(zammad)
    assert "entrasync zammad-setup" in problem and "entra_key, entra_object_type, entrasync_profile" in problem


def test_every_chunk_is_applied(ready_profile: ProfileRuntime, audit: AuditStore) -> None:
    result = apply_plan(_plan(*[_create_row(i) for i in range(75)]), ready_profile.zammad, audit, _options(workers=2))
    assert result.counts["created"] == 75 and len(_final(audit)) == 75
