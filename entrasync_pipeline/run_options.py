"""What one sync run does (dry run, approval), resolved once from every place that can say it (pure).

A run can be asked for from the CLI, the Dagster launchpad, a run tag, the schedule or the
sensor. They all end up here, so the same request means the same run wherever it came from.
Precedence, highest first:

1. an explicit value: a CLI flag (``--dry-run``, ``--approve-deactivations``) or the launchpad's
   run config (``resources.run_options.config``) — both are the run config of the Dagster run;
2. a run tag (``entrasync/dry-run``, ``entrasync/approve-deactivations``);
3. the config file (``dry_run``); approvals never come from the file.

No I/O, no Dagster imports: the wiring passes the values in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TAG_TRIGGER = "entrasync/trigger"
TAG_DRY_RUN = "entrasync/dry-run"
TAG_APPROVE = "entrasync/approve-deactivations"
TRIGGERS = ("cli", "schedule", "sensor", "ui")
TAG_PARENT_RUN = "dagster/parent_run_id"  # set by Dagster on re-executions
TAG_RETRY_NUMBER = "dagster/retry_number"  # set by Dagster's automatic run retries
RUN_OPTIONS_RESOURCE = "run_options"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class RunOptionsError(ValueError):
    """A run option has a value that means nothing (e.g. a negative approval); names the source."""


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool
    approve_deactivations: int
    dry_run_from: str  # "run config", "run tag" or "config file": shown in logs and metadata
    approval_from: str  # "run config", "run tag" or "none"


def parse_approval(value: object, source: str) -> int:
    """A non-negative whole number of deactivations; anything else is refused, never read as 0."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("+").isdigit():
        raise RunOptionsError(f"{source}: approve-deactivations must be a whole number >= 0, got {value!r}")
    return int(text)


def parse_flag(value: str, source: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise RunOptionsError(f"{source}: expected true or false, got {value!r}")


def resolve_run_options(
    dry_run: bool | None, approve_deactivations: int | None, tags: Mapping[str, str], file_dry_run: bool
) -> RunOptions:
    """The run's options by the precedence above; raises RunOptionsError for a meaningless value."""
    if dry_run is not None:
        dry, dry_from = bool(dry_run), "run config"
    elif TAG_DRY_RUN in tags:
        dry, dry_from = parse_flag(tags[TAG_DRY_RUN], f"run tag {TAG_DRY_RUN}"), "run tag"
    else:
        dry, dry_from = file_dry_run, "config file"
    if approve_deactivations is not None:
        approved, approved_from = parse_approval(approve_deactivations, "run config"), "run config"
    elif tags.get(TAG_APPROVE, "").strip():
        approved, approved_from = parse_approval(tags[TAG_APPROVE], f"run tag {TAG_APPROVE}"), "run tag"
    else:
        approved, approved_from = 0, "none"
    return RunOptions(dry, approved, dry_from, approved_from)


def trigger_of(tags: Mapping[str, str]) -> str:
    """Who asked for the run; a run launched without our tag was launched by a person in the UI."""
    trigger = tags.get(TAG_TRIGGER, "")
    return trigger if trigger in TRIGGERS else "ui"


def trigger_for_new_run(tags: Mapping[str, str]) -> str | None:
    """The trigger tag a starting run should get, or None to keep its own.

    A re-execution inherits its parent's tags, trigger included; it was started by a person in
    the UI (or a daemon retry, which keeps the parent's trigger).
    """
    if tags.get(TAG_PARENT_RUN) and not tags.get(TAG_RETRY_NUMBER):
        return "ui" if tags.get(TAG_TRIGGER) != "ui" else None
    return None if tags.get(TAG_TRIGGER) in TRIGGERS else "ui"
