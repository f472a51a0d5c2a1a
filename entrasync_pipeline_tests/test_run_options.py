"""One run configuration: an explicit value (CLI flag or launchpad run config) beats a run tag,
which beats the config file; a meaningless approval is refused, never read as zero."""

from __future__ import annotations

import pytest

from entrasync_pipeline.run_options import (
    TAG_APPROVE,
    TAG_DRY_RUN,
    TAG_TRIGGER,
    RunOptionsError,
    resolve_run_options,
    trigger_of,
)

CASES = [
    # (explicit dry_run, explicit approve, tags, file dry_run) -> (dry_run, approved, dry_from, approval_from)
    pytest.param(None, None, {}, False, (False, 0, "config file", "none"), id="nothing-set-file-wins"),
    pytest.param(None, None, {}, True, (True, 0, "config file", "none"), id="file-dry-run"),
    pytest.param(False, None, {}, True, (False, 0, "run config", "none"), id="no-dry-run-flag-beats-file"),
    pytest.param(True, None, {}, False, (True, 0, "run config", "none"), id="dry-run-flag-beats-file"),
    pytest.param(None, None, {TAG_DRY_RUN: "true"}, False, (True, 0, "run tag", "none"), id="tag-beats-file"),
    pytest.param(None, None, {TAG_DRY_RUN: "False"}, True, (False, 0, "run tag", "none"), id="tag-false-beats-file"),
    pytest.param(False, None, {TAG_DRY_RUN: "true"}, True, (False, 0, "run config", "none"), id="flag-beats-tag"),
    pytest.param(None, 6, {}, False, (False, 6, "config file", "run config"), id="approval-flag"),
    pytest.param(None, None, {TAG_APPROVE: "6"}, False, (False, 6, "config file", "run tag"), id="approval-tag"),
    pytest.param(
        None,
        2,
        {TAG_APPROVE: "9"},
        False,
        (False, 2, "config file", "run config"),
        id="approval-flag-beats-tag-even-when-smaller",
    ),
    pytest.param(
        None,
        0,
        {TAG_APPROVE: "9"},
        False,
        (False, 0, "config file", "run config"),
        id="explicit-zero-approval-beats-tag",
    ),
    pytest.param(None, None, {TAG_APPROVE: " "}, False, (False, 0, "config file", "none"), id="empty-tag-is-unset"),
]


@pytest.mark.parametrize(("dry_run", "approve", "tags", "file_dry_run", "expected"), CASES)
def test_precedence(
    dry_run: bool | None,
    approve: int | None,
    tags: dict[str, str],
    file_dry_run: bool,
    expected: tuple[bool, int, str, str],
) -> None:
    options = resolve_run_options(dry_run, approve, tags, file_dry_run)
    assert (options.dry_run, options.approve_deactivations, options.dry_run_from, options.approval_from) == expected


@pytest.mark.parametrize("bad", ["-1", "six", "1.5", "", "true"])
def test_a_meaningless_approval_tag_is_refused_naming_the_tag(bad: str) -> None:
    if not bad.strip():
        return  # an empty tag means "not set" (covered above)
    with pytest.raises(RunOptionsError, match=TAG_APPROVE):
        resolve_run_options(None, None, {TAG_APPROVE: bad}, False)


@pytest.mark.parametrize("bad", [-1, True])
def test_a_meaningless_explicit_approval_is_refused(bad: int) -> None:
    with pytest.raises(RunOptionsError, match="run config"):
        resolve_run_options(None, bad, {}, False)


def test_a_dry_run_tag_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(RunOptionsError, match=TAG_DRY_RUN):
        resolve_run_options(None, None, {TAG_DRY_RUN: "maybe"}, False)


@pytest.mark.parametrize(
    ("tags", "trigger"),
    [
        ({TAG_TRIGGER: "cli"}, "cli"),
        ({TAG_TRIGGER: "schedule"}, "schedule"),
        ({TAG_TRIGGER: "sensor"}, "sensor"),
        ({}, "ui"),
        ({TAG_TRIGGER: "bogus"}, "ui"),
    ],
)
def test_the_trigger_of_a_run(tags: dict[str, str], trigger: str) -> None:
    assert trigger_of(tags) == trigger


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        pytest.param({TAG_TRIGGER: "cli"}, None, id="cli-run-keeps-its-tag"),
        pytest.param({}, "ui", id="launchpad-run-gets-ui"),
        pytest.param({TAG_TRIGGER: "cli", "dagster/parent_run_id": "r1"}, "ui", id="re-execution-in-the-ui"),
        pytest.param({TAG_TRIGGER: "ui", "dagster/parent_run_id": "r1"}, None, id="re-execution-already-ui"),
        pytest.param(
            {TAG_TRIGGER: "schedule", "dagster/parent_run_id": "r1", "dagster/retry_number": "1"},
            None,
            id="daemon-retry-keeps-trigger",
        ),
    ],
)
def test_the_trigger_a_starting_run_gets(tags: dict[str, str], expected: str | None) -> None:
    from entrasync_pipeline.run_options import trigger_for_new_run

    assert trigger_for_new_run(tags) == expected


@pytest.mark.parametrize(
    ("explicit", "tags", "file_dry_run", "counts"),
    [
        pytest.param(None, {}, False, True, id="a-real-sync"),
        pytest.param(True, {}, False, False, id="entrasync-plan"),
        pytest.param(None, {TAG_DRY_RUN: "true"}, False, False, id="dry-run-tag"),
        pytest.param(None, {}, True, True, id="deployment-in-dry-run"),
        pytest.param(False, {}, True, True, id="real-sync-despite-the-file"),
        pytest.param(True, {}, True, False, id="explicit-dry-run-in-a-dry-deployment"),
    ],
)
def test_a_persons_dry_run_never_counts_for_health(
    explicit: bool | None, tags: dict[str, str], file_dry_run: bool, counts: bool
) -> None:
    """Freshness, the heartbeat and ``status`` ignore the dry runs people ask for, not a dry deployment's runs."""
    assert resolve_run_options(explicit, None, tags, file_dry_run).counts_for_health is counts
