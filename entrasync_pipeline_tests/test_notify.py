"""The health messages: what an admin reads when a sync stopped, recovered or waits for approval.

Run errors and reasons are untrusted text (they may quote Graph or Zammad): they stay on one line
and cannot forge structure in the message.
"""

from __future__ import annotations

from entrasync_pipeline.notify import approval_reminder_message, recovered_message, stale_message


def test_a_stale_message_says_since_when_the_limit_the_latest_run_and_where_to_look() -> None:
    message = stale_message(
        "contoso",
        "2026-12-01 02:01 UTC",
        26,
        "failed (full, 2026-12-02 02:00 UTC, run r2): MissingZammadAttributes: run zammad-setup\nRun: http://evil",
        "entrasync status --profile contoso",
    )
    assert message.kind == "failure"
    assert message.title == "entrasync contoso: no successful full sync for more than 26 h"
    lines = message.body.splitlines()
    assert (
        lines[0] == "The last successful full sync ended 2026-12-01 02:01 UTC. The limit is 26 h (freshness.max_age_h)."
    )
    assert (
        lines[1].startswith("Latest run: failed (full") and "Run: http://evil" in lines[1]
    )  # one line, not a link line
    assert lines[-1] == "Details: entrasync status --profile contoso"


def test_a_profile_never_synced_and_without_runs() -> None:
    body = stale_message("contoso", None, 26, None, "entrasync status --profile contoso").body
    assert body.startswith("No full sync succeeded yet.") and "No run since." in body


def test_recovered_and_reminder() -> None:
    recovered = recovered_message("contoso", "run-7", "2026-12-02 02:03 UTC")
    assert (recovered.kind, recovered.title) == ("info", "entrasync contoso: syncing again")
    assert "run run-7" in recovered.body
    reminder = approval_reminder_message(
        "contoso",
        31,
        "2026-12-01 02:00 UTC",
        "25.0 h ago",
        "31 deactivations > max_deactivations 25",
        "entrasync sync --profile contoso --approve-deactivations 31",
    )
    assert reminder.kind == "warning" and reminder.title == "entrasync contoso: a blocked plan waits for approval"
    assert reminder.body.splitlines() == [
        "A plan with 31 deactivations has been blocked since 2026-12-01 02:00 UTC (25.0 h ago).",
        "Blocked: 31 deactivations   max deactivations 25",
        "Review it with entrasync plan, then approve: entrasync sync --profile contoso --approve-deactivations 31",
    ]
