"""Notifications to IT admins through apprise (Teams, Slack, email, webhooks, any apprise URL).

The message text is built by pure functions (counts, a few example changes, the run link); the
sending never raises: a failing notification is logged and the sync goes on. URLs embed webhook
keys and passwords, so they are handled as secrets and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apprise

from entrasync_pipeline.plan import COUNT_COLUMNS
from entrasync_pipeline.settings import SecretValue

log = logging.getLogger(__name__)

# What the message counts: every count a run reports except the unchanged users.
_COUNTED = tuple(c for c in COUNT_COLUMNS if c != "unchanged")


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str  # "info" | "warning" | "failure"


def _clean(value: Any, limit: int = 120) -> str:
    """One line of untrusted text: no newlines or markup that could forge structure in the message."""
    text = " ".join(str(value if value is not None else "").split())
    for char in "<>`*_[]|":
        text = text.replace(char, " ")
    return text[:limit]


def summary_message(
    profile: str,
    counts: Mapping[str, int],
    examples: Sequence[Mapping[str, Any]],
    run_url: str | None,
    dry_run: bool,
    blocked_reason: str | None = None,
    failure: str | None = None,
) -> Message:
    prefix = "[DRY RUN] " if dry_run else ""
    if failure:
        title, kind = f"{prefix}entrasync {profile}: sync failed", "failure"
    elif blocked_reason:
        title, kind = f"{prefix}entrasync {profile}: blocked by a safety rule", "warning"
    else:
        title, kind = f"{prefix}entrasync {profile}: Zammad users synced", "info"
    lines = [", ".join(f"{counts.get(key, 0)} {key}" for key in _COUNTED)]
    if blocked_reason:
        lines.append(f"Blocked: {_clean(blocked_reason, 400)}")
    if failure:
        lines.append(f"Error: {_clean(failure, 400)}")
    for example in examples:
        fields = ", ".join(_clean(f, 40) for f in (example.get("changes") or {}))
        who = _clean(example.get("email") or example.get("entra_key") or example.get("zammad_id"), 80)
        lines.append(f"- {example.get('action')}: {who}" + (f" ({fields})" if fields else ""))
    if run_url:
        lines.append(f"Run: {run_url}")
    return Message(title, "\n".join(lines), kind)


class Notifier:
    def __init__(self, urls: Sequence[SecretValue]) -> None:
        self._urls = list(urls)

    def send(self, message: Message) -> bool:
        """Send to every URL; returns False (and logs) on any failure, never raises."""
        if not self._urls:
            return True
        notifier = apprise.Apprise()
        for url in self._urls:
            if not notifier.add(url.reveal()):
                log.warning("notification target %s is not a valid apprise URL; skipped", url)
        kind = {
            "info": apprise.NotifyType.INFO,
            "warning": apprise.NotifyType.WARNING,
            "failure": apprise.NotifyType.FAILURE,
        }[message.kind]
        try:
            ok = bool(
                notifier.notify(
                    title=message.title, body=message.body, notify_type=kind, body_format=apprise.NotifyFormat.TEXT
                )
            )
        except Exception as exc:  # a notification must never fail the sync
            log.warning("sending the notification failed: %s", type(exc).__name__)
            return False
        if not ok:
            log.warning("at least one notification target did not accept the message")
        return ok


# --- health: a sync that stopped, recovered, or waits for approval (the health sensor) ---------------
def stale_message(
    profile: str, last_success: str | None, max_age_h: float, latest: str | None, status_command: str
) -> Message:
    """Sent once when the freshness check turns red: no successful full run within ``max_age_h``."""
    since = (
        f"The last successful full sync ended {_clean(last_success)}."
        if last_success
        else "No full sync succeeded yet."
    )
    lines = [
        f"{since} The limit is {max_age_h:g} h (freshness.max_age_h).",
        f"Latest run: {_clean(latest, 400)}" if latest else "No run since.",
        "Check that the Dagster daemon runs, the schedule entrasync_daily_sync is on and no run waits in the queue.",
        f"Details: {status_command}",
    ]
    return Message(
        f"entrasync {profile}: no successful full sync for more than {max_age_h:g} h", "\n".join(lines), "failure"
    )


def recovered_message(profile: str, run_id: str, ended: str) -> Message:
    """Sent once when the freshness check turns green again."""
    return Message(
        f"entrasync {profile}: syncing again",
        f"A full sync succeeded: run {_clean(run_id)}, ended {_clean(ended)}.",
        "info",
    )


def approval_reminder_message(
    profile: str, deactivations: int, since: str, waited: str, reason: str | None, approve_with: str | None
) -> Message:
    """Sent once per blocked streak after ``approval_reminder_h``: a held plan nobody approved."""
    lines = [f"A plan with {deactivations} deactivations has been blocked since {_clean(since)} ({_clean(waited)})."]
    if reason:
        lines.append(f"Blocked: {_clean(reason, 400)}")
    if approve_with:
        lines.append(f"Review it with entrasync plan, then approve: {_clean(approve_with, 200)}")
    return Message(f"entrasync {profile}: a blocked plan waits for approval", "\n".join(lines), "warning")
