"""How the CLI shows plans, run summaries and audit rows (tables for people, JSON for machines)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from entrasync_pipeline.audit import export_csv, export_json
from entrasync_pipeline.freshness import duration
from entrasync_pipeline.plan import COUNT_COLUMNS, COUNT_NAMES, WRITE_ACTIONS

# Pipes and logs get wide lines instead of folded cells; a terminal keeps its own width.
_console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


@contextmanager
def progress(profile: str, enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """Progress bars for long reads and applies, only on a terminal: never in --json output or logs."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    with Progress(
        TextColumn(f"[bold]{escape(profile)}[/bold] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bars:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(escape(phase), total=total)
            bars.update(tasks[phase], completed=done, total=total)

        yield update


def to_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=str, ensure_ascii=False)


def _unwritten(summary: dict[str, Any]) -> str:
    """``planned: 54 create, 1 update`` when a plan with writes was held or stopped before any of
    them, so the zeros of the table are not read as "nothing to do"; else empty."""
    planned = {a.value: (summary.get("plan") or {}).get(a.value, 0) for a in WRITE_ACTIONS}
    if summary.get("dry_run") or summary.get("status") == "ok" or not any(planned.values()):
        return ""
    if any(summary.get(COUNT_NAMES[a], 0) for a in WRITE_ACTIONS):
        return ""
    return ", ".join(f"{n} {action}" for action, n in planned.items() if n)


def print_summary(summary: dict[str, Any]) -> None:
    title = f"entrasync {summary['profile']}"
    if summary.get("dry_run"):
        title += " — DRY RUN (nothing written)"
    elif planned := _unwritten(summary):
        title += f" — NOTHING WRITTEN (planned: {planned})"
    table = Table(title=escape(title))
    for column in COUNT_COLUMNS:
        table.add_column(column, justify="right")
    table.add_row(*(str(summary.get(c, 0)) for c in COUNT_COLUMNS))
    _console.print(table)
    if summary.get("error"):
        _console.print(f"[red]failed:[/red] {escape(str(summary['error']))}")
    if summary.get("blocked"):
        _console.print(f"[yellow]blocked:[/yellow] {escape(str(summary.get('blocked_reason')))}")
        if summary.get("approve_with"):
            _console.print(f"to approve: {escape(str(summary['approve_with']))}")
    if summary.get("stopped"):
        _console.print(f"[red]{escape(str(summary['stopped']))}[/red]")
    if summary.get("skipped_member_types"):
        kinds = ", ".join(f"{n} {k}" for k, n in summary["skipped_member_types"].items())
        _console.print(f"non-user members ignored: {escape(kinds)}")
    contacts = summary.get("contacts_read", 0)
    if contacts and "orgContact" not in (summary.get("skipped_member_types") or {}):
        _console.print(f"organizational contacts read: {contacts} (Zammad customers, entra_object_type contact)")
    if summary.get("run_id"):
        _console.print(
            f"run id: {escape(str(summary['run_id']))} (entrasync audit --run {escape(str(summary['run_id']))})"
        )


_BOOKKEEPING = ("entra_object_type", "entrasync_profile")  # set with every link; not news to a person


def print_targets(story: Sequence[dict[str, Any]], unresolved: Sequence[str] = ()) -> None:
    """A targeted run, user by user: each step from the Entra read to the write."""
    for name in unresolved:
        _console.print(f"[red]{escape(name)}[/red]: no Entra user and no linked Zammad user with this id, UPN or mail")
    for user in story:
        _console.print(f"[bold]{escape(str(user['entra_key']))}[/bold]")
        changes = ", ".join(
            f"{k}: {v[0]} → {v[1]}" for k, v in (user.get("changes") or {}).items() if k not in _BOOKKEEPING
        )
        decision = f"{user['decision']}" + (f" ({user['reason']})" if user.get("reason") else "")
        for step, text in (
            ("read", user["read"]),
            ("scope", user["scope"]),
            ("zammad", user["zammad"]),
            ("decision", decision + (f": {changes}" if changes else "")),
            ("write", user.get("write", "")),
        ):
            _console.print(f"  {step:<9} {escape(str(text))}")


def print_plan(changes: Sequence[dict[str, Any]] | None, per_action: int = 5) -> None:
    """The first decisions of each kind, deactivations first, with the fields they change.

    ``None``: the run ended before it had a plan, which is not the same as a plan without changes.
    """
    if changes is None:
        _console.print("plan: none (the run ended before planning)")
        return
    if not changes:
        _console.print("plan: nothing to change")
        return
    table = Table(title="plan (first rows per action)")
    for column in ("action", "email", "zammad_id", "changes", "reason"):
        table.add_column(column, overflow="fold")
    shown: dict[str, int] = {}
    for entry in changes:
        shown[entry["action"]] = shown.get(entry["action"], 0) + 1
        if shown[entry["action"]] > per_action:
            continue
        fields = (
            ""
            if entry["action"] == "create"
            else ", ".join(
                f"{k}: {v['before']!r} → {v['after']!r}"
                for k, v in entry["fields"].items()
                if k not in ("entra_object_type", "entrasync_profile")
            )
        )
        table.add_row(
            *(
                escape(str(x))
                for x in (
                    entry["action"],
                    entry["email"] or entry["entra_key"],
                    entry["zammad_id"] or "",
                    fields[:200],
                    entry["reason"] or "",
                )
            )
        )
    _console.print(table)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def print_audit(rows: Sequence[dict[str, Any]], fmt: str) -> None:
    if fmt == "csv":
        sys.stdout.write(export_csv(rows))
        return
    if fmt == "json":
        sys.stdout.write(export_json(rows) + "\n")
        return
    table = Table(title=f"audit ({len(rows)} rows)")
    for column in ("ts", "run_id", "action", "outcome", "email", "zammad_id", "reason", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(
                escape("" if row.get(c) is None else str(row.get(c)))
                for c in ("ts", "run_id", "action", "outcome", "email", "zammad_id", "reason", "error")
            )
        )
    _console.print(table)


# --- entrasync status ------------------------------------------------------------------------------------
_VERDICT_STYLE = {"ok": "green", "stale": "red", "failing": "red", "blocked": "yellow"}


def _age(seconds: float | None) -> str:
    return "" if seconds is None else f"{duration(seconds)} ago"


def _run_line(run: dict[str, Any] | None, now: datetime) -> str:
    if not run:
        return "none"
    ended = run.get("ended") or run.get("started")
    age = _age((now - datetime.fromisoformat(ended)).total_seconds()) if ended else ""
    return f"{run['status']} · {ended or '?'} ({age}) · {run['trigger']} · run {run['run_id']}"


def _invalid_line(invalid: dict[str, Any] | None) -> str:
    """Typed values the latest full read left out, per field: ``2 left out: employee_number 2 (…)``."""
    if not invalid:
        return "no full read yet"
    if not invalid["count"]:
        return "none"
    fields = ", ".join(f"{name} {found['count']}" for name, found in invalid["by_field"].items())
    example = next(iter(invalid["by_field"].values()), {}).get("example")
    return f"{invalid['count']} left out: {fields}" + (f"\ne.g. {example}" if example else "")


def _status_rows(item: dict[str, Any], now: datetime) -> list[tuple[str, str]]:
    failure = item["last_failure"]
    blocked = item["blocked"]
    feed = item["feed"]
    holder = item["current_run"]
    rows = [
        ("last full sync (success)", _run_line(item["last_full_success"], now) + f" · limit {item['max_age_h']:g} h"),
        ("last targeted run", _run_line(item["last_targeted"], now)),
        (
            "last failure",
            _run_line(failure, now) + (f"\n{failure['error']}" if failure and failure.get("error") else ""),
        ),
        (
            "blocked plan",
            f"{blocked['deactivations']} deactivations held since {blocked['since']}\napprove: {blocked['approve_with']}"
            if blocked
            else "none",
        ),
        (
            "current run",
            f"run {holder['run_id']} on {holder['host']} (pid {holder['pid']}) since {holder['since']}"
            if holder
            else "none",
        ),
        (
            "change feed",
            f"sensor {feed['sensor']} · position {feed['position'] or 'none'} · advanced {feed['advanced'] or 'never'}"
            f" ({_age(feed['age_s'])}) · {feed['pending']} ids waiting"
            if feed
            else "sensor never ran",
        ),
        ("invalid values", _invalid_line(item.get("invalid_values"))),
        ("audit store", item["audit_store"]),
    ]
    rows += [(f"probe {service}", answer) for service, answer in (item.get("probe") or {}).items()]
    return rows


def print_status(items: Sequence[dict[str, Any]]) -> None:
    """One table per profile; the verdict and its reasons in the title."""
    now = datetime.now(timezone.utc)
    for item in items:
        verdict = item["verdict"]
        style = _VERDICT_STYLE.get(verdict, "red")
        title = f"entrasync {escape(item['profile'])}: [{style}]{verdict}[/{style}]"
        table = Table(title=title, show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        for name, value in _status_rows(item, now):
            table.add_row(name, escape(value))
        _console.print(table)
        for reason in item["reasons"]:
            _console.print(f"  - {escape(reason)}")
