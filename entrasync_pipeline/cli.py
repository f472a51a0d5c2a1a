"""The ``entrasync`` command: argument parsing and exit codes only (STYLE.md §2.6)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from entrasync_pipeline import __version__

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
