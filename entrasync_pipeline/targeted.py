"""A targeted run's scope and its per-user story (pure).

A targeted run reads only some Entra users and the Zammad users they map to, then plans with the
same ``compute_plan`` as a full run. Two things differ, and both are decided here:

- the Zammad side holds users found by email too, which may belong to other Entra objects; the
  plan would see those as leavers. ``scope_plan`` keeps only the decisions about the targets.
- a person who asked for a user (``sync --user``) wants that user's story step by step:
  ``trace`` tells it from the run's tables, for the CLI and the run's metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from entrasync_pipeline.normalize import is_missing

TARGETS_TRACE = "targets_trace"  # metadata of sync_plan: the per-target story (sync --user prints it)
TARGETS_WRITES = "targets_writes"  # metadata of zammad_sync: each target's write outcome
TRACE_LIMIT = 200  # targets told in metadata; the audit has every one
_FINAL = ("done", "failed", "skipped", "would", "blocked")


def scope_plan(plan: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """The plan's rows about the targets; every other row is context the run was not asked about."""
    if plan.empty:
        return plan
    keep = plan["entra_key"].isin(set(targets))
    return plan[keep].reset_index(drop=True)


def trace(
    targets: Sequence[str],
    found: Mapping[str, Mapping[str, Any]],
    users: pd.DataFrame,
    zammad: pd.DataFrame,
    plan: pd.DataFrame,
) -> list[dict[str, Any]]:
    """Per target: read, in scope or not and why, the Zammad user it maps to, the decision.

    ``found``: the Entra read's per-target record (``found``, ``upn``, ``groups``).
    """
    by_key = {r["entra_key"]: r for r in users.to_dict("records")} if not users.empty else {}
    decisions = {r["entra_key"]: r for r in plan.to_dict("records")} if not plan.empty else {}
    zammad_by_id = {int(r["id"]): r for r in zammad.to_dict("records")} if not zammad.empty else {}
    zammad_by_key = {str(r["entra_key"]): r for r in zammad_by_id.values() if not is_missing(r.get("entra_key"))}
    story = []
    for key in targets:
        entra = found.get(key, {})
        decision = decisions.get(key)
        linked = _zammad_user(decision, zammad_by_id) or zammad_by_key.get(key)
        story.append(
            {
                "entra_key": key,
                "read": f"found ({entra.get('upn')})"
                if entra.get("found")
                else "not in Entra (deleted or never existed)",
                "scope": _scope(entra, by_key.get(key)),
                "zammad": f"#{linked['id']} {linked.get('login') or ''}".strip() if linked else "none",
                "decision": decision["action"] if decision else "none",
                "reason": (decision or {}).get("reason") or "",
                "changes": (decision or {}).get("changes") or {},
            }
        )
    return story


def _zammad_user(decision: Mapping[str, Any] | None, by_id: Mapping[int, Mapping[str, Any]]) -> Any:
    if decision is None or is_missing(decision.get("zammad_id")):
        return None
    return by_id.get(int(decision["zammad_id"]))


def _scope(entra: Mapping[str, Any], user: Mapping[str, Any] | None) -> str:
    if not entra.get("found"):
        return "out of scope: not in Entra"
    groups = list(entra.get("groups") or ())
    if not groups:
        return "out of scope: not a member of any configured group"
    if user is not None and not is_missing(user.get("skip_reason")):
        return f"member of {', '.join(groups)}, but skipped: {user['skip_reason']}"
    if user is not None and not is_missing(user.get("scope_reason")):
        return f"member of {', '.join(groups)}, but {user['scope_reason']}"
    return f"in scope: member of {', '.join(groups)}"


def write_outcomes(audit_rows: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> dict[str, str]:
    """Each target's last final audit outcome in this run, with Zammad's error when it failed."""
    wanted = set(targets)
    outcomes: dict[str, str] = {}
    for row in audit_rows:
        key = row.get("entra_key")
        if key in wanted and row.get("outcome") in _FINAL:
            error = f": {row['error']}" if row.get("error") else ""
            outcomes[key] = f"{row['action']} {row['outcome']}{error}"
    return outcomes
