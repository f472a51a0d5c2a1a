"""The Dagster resources: config fields only; they build runtimes and resolve options (STYLE.md §2.5).

``entrasync`` says where the config file is. ``run_options`` is what a person may set per run in
the launchpad (``resources: run_options: config: {dry_run: true, approve_deactivations: 6}``);
the CLI sets the same fields for its flags, so both go through ``resolve_run_options``.
``progress`` carries the CLI's progress bars into the steps (a no-op everywhere else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Optional

import dagster as dg
from pydantic import Field

from entrasync_pipeline.run_options import (
    TAG_SCOPE,
    TAG_TRIGGER,
    RunOptions,
    resolve_run_options,
    scope_tags,
    trigger_for_new_run,
)
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import Settings, load_settings

Progress = Callable[[str, int, Optional[int]], None]


class EntrasyncResource(dg.ConfigurableResource):
    """Where the entrasync config lives; secrets are read from the env vars the config names."""

    config_path: str = Field(description="Path of the entrasync YAML config (ENTRASYNC_CONFIG).")

    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def runtime(self, profile: str) -> ProfileRuntime:
        return ProfileRuntime(profile, self.settings())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Label runs launched in the UI (and re-executions), so the run list says who started each."""
        run, instance = context.run, context.instance
        trigger = trigger_for_new_run(run.tags) if run is not None else None
        if run is not None and instance is not None and trigger is not None:
            instance.add_run_tags(run.run_id, {TAG_TRIGGER: trigger})


class SyncRunOptions(dg.ConfigurableResource):
    """Per-run options; empty fields fall back to the run's tags, then to the config file."""

    dry_run: Optional[bool] = Field(
        None,
        description="true: compute, check and audit as 'would', write nothing. "
        "Empty: run tag entrasync/dry-run, else the config file.",
    )
    approve_deactivations: Optional[int] = Field(
        None,
        ge=0,
        description="Let up to this many deactivations through a safety threshold that blocked "
        "them (audited). Empty: run tag entrasync/approve-deactivations, else none.",
    )

    targets: Optional[list[str]] = Field(
        None,
        description="Entra object ids: a targeted run that reads, plans and writes only these users "
        "(what the change-feed sensor and 'entrasync sync --user' launch). Empty: a full run.",
    )

    def resolve(self, tags: Mapping[str, str], settings: Settings) -> RunOptions:
        return resolve_run_options(self.dry_run, self.approve_deactivations, tags, settings.dry_run, self.targets)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Show the run's scope in the run list, however it was launched."""
        run, instance = context.run, context.instance
        if run is not None and instance is not None and TAG_SCOPE not in run.tags:
            instance.add_run_tags(run.run_id, scope_tags(self.targets))


def no_progress(_phase: str, _done: int, _total: Optional[int]) -> None:
    """Runs launched by the daemon have no terminal to draw on."""


def progress_resource(report: Progress = no_progress) -> dg.ResourceDefinition:
    return dg.ResourceDefinition.hardcoded_resource(report, "Progress reporting (CLI terminals only).")
