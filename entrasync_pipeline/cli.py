"""The ``entrasync`` command: argument parsing and exit codes only (STYLE.md §2.6)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from entrasync_pipeline import __version__

if TYPE_CHECKING:
    from entrasync_pipeline.settings import Settings

# Exit codes: 0 ok, 1 failure, 2 blocked by a safety rule, 64 usage error (sysexits' EX_USAGE).
# Typer reports usage errors (bad flags, bad values) with click's 2, which here means "blocked";
# its UsageError class is not exported by name, so it is reached through BadParameter's base.
EXIT_USAGE = 64
_UsageError = typer.BadParameter.__mro__[1]
_UsageError.exit_code = EXIT_USAGE

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Keep Zammad's users in sync with Microsoft Entra ID group membership.",
)
sandbox_app = typer.Typer(no_args_is_help=True, help="Loopback emulators of Entra, Graph and Zammad.")
app.add_typer(sandbox_app, name="sandbox")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"entrasync {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    # Runs log through Dagster's console logger; plain logging shows the rest (warnings, or all with -v).
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:  # Dagster's notes about its own beta APIs are for us, not for admins
        warnings.filterwarnings("ignore", module="dagster")
        warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")


CONFIG_OPTION = typer.Option(
    None, "--config", "-c", envvar="ENTRASYNC_CONFIG", help="The YAML config (or $ENTRASYNC_CONFIG)."
)
PROFILE_OPTION = typer.Option(None, "--profile", "-p", help="One profile; default: the only one, or all in turn.")
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
USER_OPTION = typer.Option(
    None,
    "--user",
    "-u",
    help="Only this user (Entra object id, UPN or mail; repeat for more): a targeted run that shows "
    "each step for each user.",
)


def _settings(config: Optional[Path]) -> "Settings":
    from entrasync_pipeline.settings import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _profiles(settings: "Settings", name: Optional[str]) -> list[str]:
    from entrasync_pipeline.settings import ConfigError

    if name is None:
        return list(settings.profiles)
    try:
        return [settings.profile(name)[0]]
    except ConfigError as exc:  # a name the config lacks: the command line is wrong, exit 64 (EX_USAGE)
        raise typer.BadParameter(str(exc), param_hint="--profile") from None


def _run(
    config: Optional[Path],
    profile: Optional[str],
    as_json: bool,
    dry_run: Optional[bool],
    approve: Optional[int],
    users: Optional[list[str]] = None,
) -> None:
    """Run the Dagster job once per profile; the exit code is the worst run's.

    ``users``: a targeted run for these users (object id, UPN or mail) instead of a full run.
    """
    from entrasync_pipeline import report
    from entrasync_pipeline.definitions import build_definitions
    from entrasync_pipeline.resources import no_progress
    from entrasync_pipeline.runs import cli_instance, execute_sync
    from entrasync_pipeline.settings import CONFIG_ENV, ConfigError

    settings = _settings(config)
    names = _profiles(settings, profile)
    config_path = str((config or Path(os.environ[CONFIG_ENV])).resolve())
    summaries, exit_code = [], 0
    try:
        settings.audit_url()  # no run without a place for its audit trail
        with cli_instance() as instance:
            for name in names:
                targets, unresolved = _targets(settings, name, users)
                if targets == []:  # every name unknown: nothing to run
                    summaries.append({"profile": name, "status": "failed", "unresolved": unresolved})
                    exit_code = max(exit_code, 1)
                    if not as_json:
                        report.print_targets([], unresolved)
                    continue
                with report.progress(name, enabled=not as_json) as on_progress:
                    defs = build_definitions(
                        list(settings.profiles), settings.schedule, config_path, progress=on_progress or no_progress
                    )
                    level = "DEBUG" if _verbose() else "INFO"
                    outcome = execute_sync(defs, settings, name, instance, dry_run, approve, level, targets)
                summary = {**outcome.summary(), **({"unresolved": unresolved} if unresolved else {})}
                exit_code = max(exit_code, outcome.exit_code, 1 if unresolved else 0)
                summaries.append(summary)
                if not as_json:
                    if users:
                        report.print_targets(outcome.targets, unresolved)
                    else:
                        report.print_plan(outcome.changes if outcome.plan is not None else None)
                    report.print_summary(summary)
                if outcome.interrupted_by is not None:  # a Ctrl-C stops the command, not just this profile
                    break
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(report.to_json(summaries if profile is None and len(settings.profiles) > 1 else summaries[0]))
    raise typer.Exit(exit_code)


def _targets(settings: "Settings", profile: str, users: Optional[list[str]]) -> tuple[Optional[list[str]], list[str]]:
    """(Entra ids to target or None for a full run, the names that match nobody)."""
    from entrasync_pipeline.entra.errors import GraphError
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.steps import resolve_targets
    from entrasync_pipeline.zammad.errors import ZammadError

    if not users:
        return None, []
    try:
        with ProfileRuntime(profile, settings) as runtime:
            return resolve_targets(runtime, users)
    except (GraphError, ZammadError) as exc:  # looking the names up needs both services
        typer.echo(f"error: {profile}: could not look up --user: {exc}", err=True)
        raise typer.Exit(1) from None


def _verbose() -> bool:
    return logging.getLogger().level <= logging.DEBUG


@app.command("plan")
def plan_command(
    config: Optional[Path] = CONFIG_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    as_json: bool = JSON_OPTION,
    user: Optional[list[str]] = USER_OPTION,
) -> None:
    """Dry run: read Entra and Zammad, plan, check, audit as "would", write nothing.

    Runs the Dagster job (a run on $DAGSTER_HOME's instance, shown in the UI).
    Exit 0 ok, 1 failure (or a --user that matches nobody, or a mapped field Zammad cannot store),
    2 a safety rule would block the apply, 64 usage error.

    Example: entrasync plan --config entrasync.yaml --user jane.doe@contoso.com
    """
    _run(config, profile, as_json, dry_run=True, approve=None, users=user)


@app.command("sync")
def sync_command(
    config: Optional[Path] = CONFIG_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    as_json: bool = JSON_OPTION,
    approve_deactivations: Optional[int] = typer.Option(
        None,
        min=0,
        help="Let up to N deactivations through a safety threshold that blocked them (recorded in the audit).",
    ),
    dry_run: Optional[bool] = typer.Option(
        None,
        "--dry-run/--no-dry-run",
        help="Compute and show, write nothing (overrides the config file's dry_run either way).",
    ),
    user: Optional[list[str]] = USER_OPTION,
) -> None:
    """Sync Zammad with Entra by running the Dagster job in process (a run on $DAGSTER_HOME's instance).

    With --user: provision on demand, only those users (Entra object id, UPN or mail), each step shown.
    Exit 0 ok, 1 failure (or a --user that matches nobody, or a mapped field Zammad cannot store),
    2 blocked by a safety rule, 64 usage error.

    Example: entrasync sync --config entrasync.yaml --json
    Example: entrasync sync --config entrasync.yaml --user jane.doe@contoso.com
    """
    _run(config, profile, as_json, dry_run=dry_run, approve=approve_deactivations, users=user)


@app.command("zammad-setup")
def zammad_setup_command(config: Optional[Path] = CONFIG_OPTION, profile: Optional[str] = PROFILE_OPTION) -> None:
    """Create the custom user attributes entra_key, entra_object_type, entrasync_profile and the opt-out
    flag entrasync_ignore, and every mapped field Zammad lacks with its type (mapping.<field>.type),
    then run the migrations (idempotent).

    Needs a Zammad token with admin.object; restart Zammad afterwards.
    Example: entrasync zammad-setup --config entrasync.yaml
    """
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.steps import setup_report, setup_zammad

    settings = _settings(config)
    exit_code = 0
    for name in _profiles(settings, profile):
        try:
            with ProfileRuntime(name, settings) as runtime:
                created = setup_zammad(runtime)
                report = setup_report(runtime, created)
        except Exception as exc:
            typer.echo(f"error: {name}: {exc}", err=True)
            raise typer.Exit(1) from None
        for attribute, found, _ in report:
            typer.echo(f"{name}: {attribute}: {found}")
        problems = [problem for _, _, found in report for problem in found]
        if created:
            typer.echo(f"{name}: created {', '.join(created)} and ran the migrations (restart Zammad)")
        elif not problems:
            typer.echo(f"{name}: every attribute already present")
        for problem in problems:  # a field of another type: setup never changes an existing field
            typer.echo(f"error: {name}: {problem}", err=True)
            exit_code = 1
    raise typer.Exit(exit_code)


@app.command("audit")
def audit_command(
    config: Optional[Path] = CONFIG_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    run: Optional[str] = typer.Option(None, "--run", help="Only this run id."),
    since: Optional[str] = typer.Option(None, help="ISO date/time (UTC if no zone), e.g. 2026-11-01."),
    until: Optional[str] = typer.Option(None, help="ISO date/time, exclusive."),
    user: Optional[str] = typer.Option(None, help="entra_key, email, UPN or Zammad id."),
    action: Optional[str] = typer.Option(None, help="create, update, reactivate, deactivate, skip, ..."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    limit: Optional[int] = typer.Option(None, help="At most this many rows."),
) -> None:
    """Show or export the audit trail (CSV is safe against spreadsheet formula injection).

    Example: entrasync audit --config entrasync.yaml --since 2026-11-01 --action deactivate --format csv
    """
    from entrasync_pipeline import report
    from entrasync_pipeline.audit import AuditFilter, AuditStore
    from entrasync_pipeline.settings import ConfigError

    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter("is table, csv or json", param_hint="--format")
    settings = _settings(config)
    try:
        filters = AuditFilter(
            run_id=run,
            since=report.parse_time(since),
            until=report.parse_time(until),
            user=user,
            action=action,
            profile=profile,
            limit=limit,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        store = AuditStore(settings.audit_url())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        rows = store.query(filters)
    finally:
        store.close()
    report.print_audit(rows, fmt)


@app.command("status")
def status_command(
    config: Optional[Path] = CONFIG_OPTION,
    profile: Optional[str] = PROFILE_OPTION,
    as_json: bool = JSON_OPTION,
    probe: bool = typer.Option(
        False, "--probe", help="Also check that Graph and Zammad answer with the configured credentials (reads only)."
    ),
) -> None:
    """Is the sync healthy? Per profile: last full and targeted runs, last failure, a blocked plan,
    the run holding the profile, the change feed, the audit store, and a verdict ok|stale|failing|blocked.

    Reads the Dagster instance of $DAGSTER_HOME and the audit store; calls Graph and Zammad only with
    --probe. Exit 0 when every profile is ok, 1 otherwise (a monitoring probe can run it).

    Example: entrasync status --json
    """
    import time

    from entrasync_pipeline import report
    from entrasync_pipeline.health import probe_health, profile_health
    from entrasync_pipeline.runs import cli_instance
    from entrasync_pipeline.settings import ConfigError

    settings = _settings(config)
    names = _profiles(settings, profile)
    if not os.environ.get("DAGSTER_HOME"):
        typer.echo("error: status reads the Dagster instance of $DAGSTER_HOME: set DAGSTER_HOME", err=True)
        raise typer.Exit(1)
    try:
        with cli_instance() as instance:
            found = [profile_health(instance, settings, name, time.time()) for name in names]
        if probe:
            found = [probe_health(item, settings) for item in found]
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        payload = [item.to_json() for item in found]
        typer.echo(report.to_json(payload if len(payload) > 1 else payload[0]))
    else:
        report.print_status([item.to_json() for item in found])
    raise typer.Exit(0 if all(item.verdict.ok for item in found) else 1)


@app.command("config-reference")
def config_reference_command() -> None:
    """Print the configuration reference (Markdown) generated from the config model.

    Example: entrasync config-reference > docs/configuration.md
    """
    from entrasync_pipeline.config_reference import render

    typer.echo(render(), nl=False)


@sandbox_app.command("serve")
def sandbox_serve(
    seed: str = typer.Option("demo", help="'demo', 'bench:N[:share]' or a YAML/JSON seed file."),
    state_dir: Path = typer.Option(Path("sandbox-state"), help="Where sandbox.json, sandbox.env and the CA go."),
    write_config: Optional[Path] = typer.Option(None, help="Also write an entrasync config for the sandbox here."),
    graph_port: int = typer.Option(0, help="Port of the token endpoint + Graph server (0: any free port)."),
    zammad_port: int = typer.Option(0, help="Port of the Zammad server (0: any free port)."),
) -> None:
    """Serve the emulators on 127.0.0.1 until SIGINT/SIGTERM.

    Example: entrasync sandbox serve --seed demo --state-dir sandbox-state --write-config sandbox-state/config.yaml
    """
    from entrasync_pipeline.sandbox.serve import serve

    serve(seed, state_dir, write_config, graph_port, zammad_port)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
