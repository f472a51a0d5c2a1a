"""The shared steps of a run: progress reporting for long reads and applies."""

from __future__ import annotations

import pytest

from entrasync_pipeline import sync
from entrasync_pipeline.sync import Profile


def test_reads_and_writes_report_progress(ready_profile: Profile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync, "PROGRESS_EVERY", 5)
    seen: list[tuple[str, int, int | None]] = []
    outcome = sync.run_profile(ready_profile, dry_run=False, progress=lambda *p: seen.append(p))
    phases = {phase for phase, _, _ in seen}
    assert {"reading IT Support", "reading Sales", "reading Zammad", "writing"} <= phases
    writes = [(done, total) for phase, done, total in seen if phase == "writing"]
    assert writes[-1] == (outcome.result.counts["created"] + outcome.result.counts["updated"],) * 2
