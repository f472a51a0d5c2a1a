"""The ``entrasync`` command: argument parsing and exit codes only (STYLE.md §2.6)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from entrasync_pipeline import __version__

if TYPE_CHECKING:
    from entrasync_pipeline.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Keep Zammad's users in sync with Microsoft Entra ID group membership.")
sandbox_app = typer.Typer(no_args_is_help=True, help="Loopback emulators of Entra, Graph and Zammad.")
app.add_typer(sandbox_app, name="sandbox")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"entrasync {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


CONFIG_OPTION = typer.Option(None, "--config", "-c", envvar="ENTRASYNC_CONFIG",
                             help="The YAML config (or $ENTRASYNC_CONFIG).")
PROFILE_OPTION = typer.Option(None, "--profile", "-p", help="One profile; default: the only one, or all in turn.")
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


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
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _run(config: Optional[Path], profile: Optional[str], as_json: bool, dry_run: bool, approve: int) -> None:
    from entrasync_pipeline import report
    from entrasync_pipeline.sync import Profile, run_profile

    settings = _settings(config)
    summaries, exit_code = [], 0
    for name in _profiles(settings, profile):
        runtime = Profile(name, settings)
        try:
            with report.progress(name, enabled=not as_json) as on_progress:
                outcome = run_profile(runtime, dry_run=dry_run or settings.dry_run, approve_deactivations=approve,
                                      progress=on_progress)
        except Exception as exc:
            summary = report.failure_summary(name, exc)
            exit_code = max(exit_code, 1)
        else:
            summary = outcome.summary()
            if outcome.result.blocked:
                exit_code = max(exit_code, 2)
            elif outcome.result.failed or outcome.result.stopped:
                exit_code = max(exit_code, 1)
            if not as_json:
                report.print_plan(outcome.plan)
        finally:
            runtime.close()
        summaries.append(summary)
        if not as_json:
            report.print_summary(summary)
    if as_json:
        typer.echo(report.to_json(summaries if profile is None and len(settings.profiles) > 1 else summaries[0]))
    raise typer.Exit(exit_code)


@app.command("plan")
def plan_command(config: Optional[Path] = CONFIG_OPTION, profile: Optional[str] = PROFILE_OPTION,
                 as_json: bool = JSON_OPTION) -> None:
    """Dry run: read Entra and Zammad, print the plan, write nothing.

    Example: entrasync plan --config entrasync.yaml
    """
    _run(config, profile, as_json, dry_run=True, approve=0)


@app.command("sync")
def sync_command(config: Optional[Path] = CONFIG_OPTION, profile: Optional[str] = PROFILE_OPTION,
                 as_json: bool = JSON_OPTION,
                 approve_deactivations: int = typer.Option(0, help="Approve up to N deactivations that a safety "
                                                                   "threshold blocked (recorded in the audit)."),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Compute and show, write nothing.")) -> None:
    """Sync Zammad with Entra (the same code path as the Dagster job). Exit 0 ok, 1 failure, 2 blocked.

    Example: entrasync sync --config entrasync.yaml --json
    """
    _run(config, profile, as_json, dry_run=dry_run, approve=approve_deactivations)


@app.command("zammad-setup")
def zammad_setup_command(config: Optional[Path] = CONFIG_OPTION, profile: Optional[str] = PROFILE_OPTION) -> None:
    """Create the custom user attributes entra_key, entra_object_type and entrasync_profile (idempotent).

    Needs a Zammad token with admin.object. Example: entrasync zammad-setup --config entrasync.yaml
    """
    from entrasync_pipeline.sync import Profile, setup_zammad

    settings = _settings(config)
    for name in _profiles(settings, profile):
        runtime = Profile(name, settings)
        try:
            created = setup_zammad(runtime)
        except Exception as exc:
            typer.echo(f"error: {name}: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            runtime.close()
        typer.echo(f"{name}: " + (f"created {', '.join(created)} and ran the migrations" if created
                                  else "attributes already present"))


@app.command("audit")
def audit_command(config: Optional[Path] = CONFIG_OPTION, profile: Optional[str] = PROFILE_OPTION,
                  run: Optional[str] = typer.Option(None, "--run", help="Only this run id."),
                  since: Optional[str] = typer.Option(None, help="ISO date/time (UTC if no zone), e.g. 2026-11-01."),
                  until: Optional[str] = typer.Option(None, help="ISO date/time, exclusive."),
                  user: Optional[str] = typer.Option(None, help="entra_key, email, UPN or Zammad id."),
                  action: Optional[str] = typer.Option(None, help="create, update, reactivate, deactivate, skip, ..."),
                  fmt: str = typer.Option("table", "--format", help="table, csv or json."),
                  limit: Optional[int] = typer.Option(None, help="At most this many rows.")) -> None:
    """Show or export the audit trail (CSV is safe against spreadsheet formula injection).

    Example: entrasync audit --config entrasync.yaml --since 2026-11-01 --action deactivate --format csv
    """
    from entrasync_pipeline import report
    from entrasync_pipeline.audit import AuditFilter, AuditStore
    from entrasync_pipeline.settings import dagster_home

    settings = _settings(config)
    if fmt not in ("table", "csv", "json"):
        typer.echo("error: --format is table, csv or json", err=True)
        raise typer.Exit(1)
    try:
        filters = AuditFilter(run_id=run, since=report.parse_time(since), until=report.parse_time(until),
                              user=user, action=action, profile=profile, limit=limit)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    store = AuditStore(settings.audit_url(dagster_home()))
    try:
        rows = store.query(filters)
    finally:
        store.close()
    report.print_audit(rows, fmt)


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
