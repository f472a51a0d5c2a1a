"""Imports point inward (STYLE.md §2.1): the core never imports I/O, the clock, env or Dagster;
the I/O shell never imports Dagster; the sandbox imports neither client."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "entrasync_pipeline"
CORE = [
    "normalize.py",
    "plan.py",
    "fields.py",
    "organizations.py",
    "group_access.py",
    "safety.py",
    "schemas.py",
    "run_options.py",
    "targeted.py",
    "freshness.py",
]
SHELL = [
    "entra",
    "zammad",
    "transport.py",
    "proxy.py",
    "apply.py",
    "audit.py",
    "lease.py",
    "notify.py",
    "heartbeat.py",
    "runtime.py",
    "steps.py",
    "settings.py",
]
CORE_FORBIDDEN = (
    "requests",
    "msal",
    "dagster",
    "os",
    "time",
    "datetime",
    "sqlalchemy",
    "apprise",
    "entrasync_pipeline.entra",
    "entrasync_pipeline.zammad",
    "entrasync_pipeline.transport",
    "entrasync_pipeline.steps",
    "entrasync_pipeline.runtime",
    "entrasync_pipeline.settings",
    "entrasync_pipeline.lease",
    "entrasync_pipeline.audit",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _files(entries: list[str]) -> list[Path]:
    out = []
    for entry in entries:
        target = PACKAGE / entry
        out += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return out


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{f.relative_to(PACKAGE)} imports {name}"
        for f in files
        for name in _imports(f)
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    ]


def test_the_core_is_pure() -> None:
    assert _violations(_files(CORE), CORE_FORBIDDEN) == []


def test_the_io_shell_does_not_import_dagster() -> None:
    assert _violations(_files(SHELL), ("dagster", "dagster_pandera")) == []


def test_the_sandbox_imports_neither_client() -> None:
    forbidden = (
        "entrasync_pipeline.entra",
        "entrasync_pipeline.zammad",
        "entrasync_pipeline.transport",
        "entrasync_pipeline.steps",
        "entrasync_pipeline.runtime",
        "entrasync_pipeline.apply",
        "entrasync_pipeline.normalize",
        "entrasync_pipeline.plan",
    )
    assert _violations(_files(["sandbox"]), forbidden) == []
