"""What one sync run does (dry run, approval), resolved once from every place that can say it (pure).

A run can be asked for from the CLI, the Dagster launchpad, a run tag, the schedule or the
sensor. They all end up here, so the same request means the same run wherever it came from.
Precedence, highest first:

1. an explicit value: a CLI flag (``--dry-run``, ``--approve-deactivations``) or the launchpad's
   run config (``resources.run_options.config``) — both are the run config of the Dagster run;
2. a run tag (``entrasync/dry-run``, ``entrasync/approve-deactivations``);
3. the config file (``dry_run``); approvals never come from the file.

A run's scope is the run config's ``targets`` (Entra object ids): absent, the run is a full run;
present, a targeted run that reads, plans and writes only those users (the sensor's and
``sync --user``'s runs). The tag ``entrasync/scope`` shows it in the run list.

No I/O, no Dagster imports: the wiring passes the values in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAG_TRIGGER = "entrasync/trigger"
TAG_DRY_RUN = "entrasync/dry-run"
TAG_APPROVE = "entrasync/approve-deactivations"
# What a run stopped by Ctrl-C or a stop request reports (the CLI, the run's failure, the status).
INTERRUPTED_TEXT = (
    "interrupted (Ctrl-C or a stop request); writes it had started are recorded as 'interrupted' "
    "by the profile's next run, which re-plans from Zammad's live state"
)
TAG_SCOPE = "entrasync/scope"  # "full" or "targeted"
TAG_TARGETS = "entrasync/targets"  # how many users a targeted run is about
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
    targets: tuple[str, ...] | None = None  # None: a full run

    @property
    def scope(self) -> str:
        return "full" if self.targets is None else "targeted"

    @property
    def counts_for_health(self) -> bool:
        """Whether the run is a sync as far as health goes (freshness, heartbeat, ``status``).

        A dry run asked for by a person (``entrasync plan``, the launchpad, a run tag) writes
        nothing, so it must neither keep a stopped sync looking fresh nor ping the heartbeat;
        a deployment whose config file says ``dry_run`` has only dry runs, and they count.
        """
        return not self.dry_run or self.dry_run_from == "config file"


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


def parse_targets(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """A targeted run's Entra object ids, each once, in order; an empty list is refused, not read as "all"."""
    if values is None:
        return None
    targets = tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    if not targets:
        raise RunOptionsError("run config targets: an empty list targets nobody; leave it out for a full run")
    return targets


def scope_tags(targets: Sequence[str] | None) -> dict[str, str]:
    """The tags that show a run's scope in the run list."""
    if targets is None:
        return {TAG_SCOPE: "full"}
    return {TAG_SCOPE: "targeted", TAG_TARGETS: str(len(targets))}


def resolve_run_options(
    dry_run: bool | None,
    approve_deactivations: int | None,
    tags: Mapping[str, str],
    file_dry_run: bool,
    targets: Sequence[str] | None = None,
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
    return RunOptions(dry, approved, dry_from, approved_from, parse_targets(targets))


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
