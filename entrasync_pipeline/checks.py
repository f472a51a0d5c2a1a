"""Blocking asset checks: the plan is only written when these pass (DESIGN.md §1).

Results are built here and yielded by the assets that own them, so a failing check stores the
value (the plan stays visible) while keeping ``zammad_sync`` from running.
"""

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from entrasync_pipeline.safety import SafetyVerdict
from entrasync_pipeline.schemas import SYNC_PLAN, UNIVERSAL_USERS

UNIVERSAL_USERS_CHECK = "universal_users_schema"
SYNC_PLAN_SCHEMA_CHECK = "sync_plan_schema"
SYNC_PLAN_SAFETY_CHECK = "sync_plan_safety"
SYNC_PLAN_FIELDS_CHECK = "sync_plan_fields"
SYNC_PLAN_GROUPS_CHECK = "sync_plan_groups"
# Setup faults: a failed one holds every write and fails the run (exit 1); no approval lifts it.
SETUP_CHECKS = (SYNC_PLAN_FIELDS_CHECK, SYNC_PLAN_GROUPS_CHECK)


def _schema_result(asset: str, name: str, schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dg.AssetCheckResult:
    try:
        schema.validate(frame, lazy=True, inplace=True)  # nothing is coerced: no copy of the table needed
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases
        sample = failures.head(10)[["column", "check", "failure_case"]].astype(str)
        table = "\n".join(
            ["| column | check | failure |", "|---|---|---|"]
            + [f"| {r.column} | {r.check} | {r.failure_case[:60]} |" for r in sample.itertuples()]
        )
        return dg.AssetCheckResult(
            asset_key=asset,
            check_name=name,
            passed=False,
            metadata={"failures": len(failures), "sample": dg.MetadataValue.md(table)},
        )
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=True, metadata={"rows": len(frame)})


def universal_users_result(users: pd.DataFrame) -> dg.AssetCheckResult:
    return _schema_result("universal_users", UNIVERSAL_USERS_CHECK, UNIVERSAL_USERS, users)


def sync_plan_schema_result(plan: pd.DataFrame) -> dg.AssetCheckResult:
    return _schema_result("sync_plan", SYNC_PLAN_SCHEMA_CHECK, SYNC_PLAN, plan)


def sync_plan_safety_result(verdict: SafetyVerdict, how_to_approve: str | None = None) -> dg.AssetCheckResult:
    """``how_to_approve``: shown with a blocked verdict, in the terms of the place that reads it.

    It goes into the description, which the UI shows as the check's latest result, so the person
    who opens a blocked check reads what is held and what to do without opening anything else.
    """
    reasons = "\n".join(f"- {r}" for r in verdict.reasons) or "_within limits_"
    description = verdict.summary
    metadata: dict[str, object] = {
        "deactivations": verdict.deactivations,
        "managed_users": verdict.managed,
        "approved": verdict.approved,
        "reasons": dg.MetadataValue.md(reasons),
        "summary": dg.MetadataValue.text(verdict.summary),
    }
    if verdict.blocked and how_to_approve:
        description = f"Held: {verdict.deactivations} deactivations. {verdict.summary}. {how_to_approve}"
        metadata["how_to_approve"] = dg.MetadataValue.text(how_to_approve)
    return dg.AssetCheckResult(
        asset_key="sync_plan",
        check_name=SYNC_PLAN_SAFETY_CHECK,
        passed=not verdict.blocked,
        description=description,
        metadata=metadata,
    )


def sync_plan_fields_result(problems: list[str], checked: str) -> dg.AssetCheckResult:
    """Zammad holds every mapped field with its type, or the plan is held (fields.field_problems).

    The description names each field and the fix: it is what the UI shows as the check's result
    and what ``entrasync plan``/``sync`` print when it fails.
    """
    listed = "\n".join(f"- {p}" for p in problems) or "_every mapped field is there, with its type_"
    return dg.AssetCheckResult(
        asset_key="sync_plan",
        check_name=SYNC_PLAN_FIELDS_CHECK,
        passed=not problems,
        description="; ".join(problems) if problems else f"mapped fields checked: {checked}",
        metadata={"problems": len(problems), "checked": checked, "fields": dg.MetadataValue.md(listed)},
    )


def sync_plan_groups_result(problems: list[str], managed: bool) -> dg.AssetCheckResult:
    """Every Zammad group named in ``groups[].zammad_groups`` exists and is active, or the plan is
    held (group_access.missing_groups): the description names each group."""
    listed = "\n".join(f"- {p}" for p in problems) or "_every configured Zammad group is there_"
    checked = "configured Zammad groups checked" if managed else "no Zammad group access configured"
    return dg.AssetCheckResult(
        asset_key="sync_plan",
        check_name=SYNC_PLAN_GROUPS_CHECK,
        passed=not problems,
        description="; ".join(problems) if problems else checked,
        metadata={"problems": len(problems), "groups": dg.MetadataValue.md(listed)},
    )
