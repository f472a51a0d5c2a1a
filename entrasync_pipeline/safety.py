"""Safety rules evaluated on a plan before any write (pure; DESIGN.md §2 "Safety").

The failures users of identity syncs report most are mass deactivations after an empty or
failed read or a bad config (reference/peers-and-pain-points.md §4). So: an empty read, or a
configured group that returned nobody while Zammad has managed users, blocks; more
deactivations than the threshold (a count and a share of managed users) block until approved;
an approval for N never authorizes more than N.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from entrasync_pipeline.plan import Action


@dataclass(frozen=True)
class SafetyLimits:
    max_deactivations: int
    max_deactivation_share: float


@dataclass(frozen=True)
class SafetyVerdict:
    blocked: bool
    deactivations: int
    managed: int
    approved: int
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "within limits"


def managed_count(zammad: pd.DataFrame, profile: str) -> int:
    """Active Zammad users this profile manages (non-empty entra_key, owned by the profile)."""
    if zammad.empty or "entra_key" not in zammad or "entrasync_profile" not in zammad:
        return 0
    keyed = zammad["entra_key"].fillna("").astype(str) != ""
    owned = zammad["entrasync_profile"] == profile  # profile names are never empty (settings.py)
    return int((keyed & owned & zammad["active"].astype(bool)).sum())


def evaluate(
    plan: pd.DataFrame, managed: int, members_per_group: Mapping[str, int], limits: SafetyLimits, approved: int = 0
) -> SafetyVerdict:
    """Decide whether the plan's deactivations may be written."""
    deactivations = int((plan["action"] == Action.DEACTIVATE.value).sum()) if not plan.empty else 0
    reasons: list[str] = []
    if managed and members_per_group and sum(members_per_group.values()) == 0:
        reasons.append(f"Entra returned no members while {managed} managed Zammad users exist (failed or empty read?)")
    empty = sorted(g for g, n in members_per_group.items() if n == 0)
    if managed and empty and deactivations and not reasons and approved < deactivations:
        reasons.append(f"group(s) {', '.join(empty)} returned no members; refusing to deactivate on that read")
    share_limit = limits.max_deactivation_share * managed
    over_count = deactivations > limits.max_deactivations
    over_share = managed > 0 and deactivations > max(share_limit, 1)
    if (over_count or over_share) and approved < deactivations:
        limit = f"at most {limits.max_deactivations} or {limits.max_deactivation_share:.0%} of {managed} managed users"
        reasons.append(
            f"{deactivations} deactivations exceed the threshold ({limit})"
            + (
                f"; the approval for {approved} does not cover them"
                if approved
                else f"; they need an approval for {deactivations}"
            )
        )
    return SafetyVerdict(bool(reasons), deactivations, managed, approved, reasons)
