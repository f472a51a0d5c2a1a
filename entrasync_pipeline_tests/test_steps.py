"""The steps of a run, called as the assets call them: progress reporting for long reads and applies."""

from __future__ import annotations

import pytest

from entrasync_pipeline import steps
from entrasync_pipeline.runtime import ProfileRuntime


def test_reads_and_writes_report_progress(ready_profile: ProfileRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "PROGRESS_EVERY", 5)
    seen: list[tuple[str, int, int | None]] = []
    members = steps.read_entra_members(ready_profile, lambda *p: seen.append(p))
    users = steps.universal_users(members, ready_profile.config)
    zammad = steps.read_zammad_users(ready_profile, lambda *p: seen.append(p))
    plan = steps.compute_sync_plan(ready_profile, users, zammad)
    result = steps.apply(ready_profile, plan, "run-progress", dry_run=False, progress=lambda *p: seen.append(p))
    phases = {phase for phase, _, _ in seen}
    assert {"reading IT Support", "reading Sales", "reading Zammad", "writing"} <= phases
    writes = [(done, total) for phase, done, total in seen if phase == "writing"]
    assert writes[-1] == (result.counts["created"] + result.counts["updated"],) * 2


def test_the_admin_role_is_found_by_name_not_assumed(ready_profile: ProfileRuntime) -> None:
    roles = steps.zammad_roles(ready_profile)
    options = steps.plan_options(ready_profile, roles)
    assert options.admin_role_ids == frozenset({roles["Admin"]})
    assert options.role_ids is None  # no group -> role mapping configured: roles are not managed


def test_a_value_a_row_repeats_is_held_once(ready_profile: ProfileRuntime) -> None:
    """login = email and userPrincipalName = mail are one string object each (7 MB per 100,000 users)."""
    members = steps.read_entra_members(ready_profile)
    same = members[members["mail"] == members["userPrincipalName"]]
    assert len(same) and all(a is b for a, b in zip(same["mail"], same["userPrincipalName"]))
    zammad = steps.read_zammad_users(ready_profile)
    same = zammad[zammad["email"] == zammad["login"]]
    assert len(same) and all(a is b for a, b in zip(same["email"], same["login"]))
    differ = zammad[(zammad["email"] != zammad["login"]) & zammad["email"].astype(bool)]
    assert len(differ) and (differ["login"] != differ["email"]).all()  # only equal values are shared
