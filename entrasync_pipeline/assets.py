"""The five assets of one sync (DESIGN.md §1); each calls the matching step in ``sync``.

Assets are nouns for the state they hold. They log counts, return metadata the UI charts over
time (integers per action), and decide nothing themselves. The raw snapshots carry pandera
Dagster types (a bad frame stores nothing); ``universal_users`` and ``sync_plan`` carry blocking
checks, so ``zammad_sync`` never runs on an invalid or unsafe plan.
"""


from typing import Any, Iterator

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type
from pydantic import Field

from entrasync_pipeline import checks, sync
from entrasync_pipeline.apply import ApplyResult, empty_counts, example_changes
from entrasync_pipeline.audit import AuditRow
from entrasync_pipeline.normalize import skipped_member_types
from entrasync_pipeline.plan import ROLE_MERGE_NOTE, Action, action_counts
from entrasync_pipeline.resources import EntrasyncResource
from entrasync_pipeline.schemas import ENTRA_MEMBERS, ZAMMAD_USERS

GROUP = "entrasync"
OWNERS = ["team:it-identity"]
READ_RETRY = dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
APPROVAL_TAG = "entrasync/approve-deactivations"

EntraMembersType = pandera_schema_to_dagster_type(ENTRA_MEMBERS)
ZammadUsersType = pandera_schema_to_dagster_type(ZAMMAD_USERS)


class SyncPlanConfig(dg.Config):
    approve_deactivations: int = Field(
        0, ge=0, description="Approve up to this many deactivations a safety threshold blocked "
                             f"(also settable as run tag {APPROVAL_TAG}). Recorded in the audit.")


class SyncApplyConfig(dg.Config):
    dry_run: bool | None = Field(None, description="true: compute and record, write nothing. "
                                                   "Empty: the config file's dry_run.")


def _column_schema(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dg.TableSchema:
    described = {name: column.description or "" for name, column in schema.columns.items()}
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(frame[c].dtype), description=described.get(c, ""))
                                   for c in frame.columns])


def _md_table(frame: pd.DataFrame, columns: list[str]) -> str:
    if frame.empty:
        return "_none_"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame[columns].to_dict("records"):
        cells = [str(row[c])[:80].replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _read(entrasync: EntrasyncResource, profile_name: str, reader: Any) -> tuple[pd.DataFrame, sync.Profile]:
    """Run one read step with the profile's clients, closing their connections afterwards."""
    profile = entrasync.profile(profile_name)
    try:
        return reader(profile), profile
    finally:
        profile.close()


def _report_blocked(context: dg.AssetExecutionContext, profile: sync.Profile, plan: pd.DataFrame,
                    reason: str) -> None:
    """A blocked plan is audited and announced here, because the apply will not run."""
    context.log.warning("apply blocked: %s", reason)
    audit = profile.audit()
    try:
        writes = plan[plan["action"].isin([a.value for a in (Action.CREATE, Action.UPDATE, Action.REACTIVATE,
                                                              Action.DEACTIVATE)])]
        audit.record(AuditRow(context.run_id, profile.name, r["action"], "blocked", entra_key=r["entra_key"],
                              upn=r["upn"], email=r["email"], zammad_id=None if pd.isna(r["zammad_id"]) else int(r["zammad_id"]),
                              changes=r["changes"], reason=reason) for r in writes.to_dict("records"))
    finally:
        audit.close()
    blocked = ApplyResult(empty_counts(), dry_run=False, blocked=reason)
    sync.notify(profile, plan, blocked, _run_url(context, profile))


def _run_url(context: dg.AssetExecutionContext, profile: sync.Profile) -> str | None:
    base = profile.settings.dagster_url
    return f"{base.rstrip('/')}/runs/{context.run_id}" if base else None



def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The five assets, partitioned by sync profile."""

    @dg.asset(
        group_name=GROUP, partitions_def=partitions, owners=OWNERS, kinds={"microsoft", "pandas"},
        dagster_type=EntraMembersType, retry_policy=READ_RETRY, code_version="1",
        description="Raw snapshot of the configured Entra groups: one row per (group, member) with its "
                    "@odata.type and the Graph properties the mapping selects; every page read.",
    )
    def entra_group_members(context: dg.AssetExecutionContext, entrasync: EntrasyncResource) -> dg.Output[pd.DataFrame]:
        members, profile = _read(entrasync, context.partition_key, sync.read_entra_members)
        per_group = sync.members_per_group(members, profile.config)
        context.log.info("read %d member rows from %d groups: %s", len(members), len(per_group), per_group)
        return dg.Output(members, metadata={
            "dagster/row_count": len(members),
            "dagster/column_schema": _column_schema(ENTRA_MEMBERS, members),
            "users_per_group": dg.MetadataValue.json(per_group),
            "member_types_skipped": dg.MetadataValue.json(skipped_member_types(members)),
        })


    @dg.asset(
        group_name=GROUP, partitions_def=partitions, owners=OWNERS, kinds={"pandas"}, code_version="1",
        check_specs=[dg.AssetCheckSpec(checks.UNIVERSAL_USERS_CHECK, asset="universal_users", blocking=True,
                                       description="pandera schema of the universal users")],
        description="One row per Entra user in scope, normalized into the form Zammad stores (email, names, "
                    "phones, department, mapped extras, entra_key, roles, source groups, skip_reason).",
    )
    def universal_users(context: dg.AssetExecutionContext, entrasync: EntrasyncResource,
                        entra_group_members: pd.DataFrame) -> Iterator[Any]:
        settings = entrasync.settings()
        users = sync.universal_users(entra_group_members, settings.profiles[context.partition_key])
        skipped = users[users["skip_reason"].notna()]
        if len(skipped):
            context.log.warning("%d users skipped: %s", len(skipped),
                                skipped["skip_reason"].value_counts().to_dict())
        yield dg.Output(users, metadata={
            "dagster/row_count": len(users),
            "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(str(c), str(users[c].dtype))
                                                              for c in users.columns]),
            "skipped": len(skipped),
            "skip_reasons": dg.MetadataValue.md(_md_table(skipped.head(20), ["entra_key", "upn", "skip_reason"])),
        })
        yield checks.universal_users_result(users)


    @dg.asset(
        group_name=GROUP, partitions_def=partitions, owners=OWNERS, kinds={"pandas"},
        dagster_type=ZammadUsersType, retry_policy=READ_RETRY, code_version="1",
        description="Snapshot of every Zammad user (system and inactive users included), every page.",
    )
    def zammad_users(context: dg.AssetExecutionContext, entrasync: EntrasyncResource) -> dg.Output[pd.DataFrame]:
        users, _ = _read(entrasync, context.partition_key, sync.read_zammad_users)
        keyed = int((users["entra_key"].fillna("") != "").sum()) if not users.empty else 0
        context.log.info("read %d Zammad users (%d carry an entra_key)", len(users), keyed)
        return dg.Output(users, metadata={
            "dagster/row_count": len(users),
            "dagster/column_schema": _column_schema(ZAMMAD_USERS, users),
            "with_entra_key": keyed,
            "inactive": int((~users["active"]).sum()) if not users.empty else 0,
            "has_entra_attributes": bool(users.attrs.get("has_entra_attributes", False)),
        })


    @dg.asset(
        group_name=GROUP, partitions_def=partitions, owners=OWNERS, kinds={"pandas"}, code_version="1",
        check_specs=[dg.AssetCheckSpec(checks.SYNC_PLAN_SCHEMA_CHECK, asset="sync_plan", blocking=True,
                                       description="pandera schema of the plan"),
                     dg.AssetCheckSpec(checks.SYNC_PLAN_SAFETY_CHECK, asset="sync_plan", blocking=True,
                                       description="empty-read guard and deactivation threshold")],
        description="One row per decision (create, update, reactivate, deactivate, noop, skip, conflict) with "
                    "the changed fields before → after. Blocked plans stay visible here.",
    )
    def sync_plan(context: dg.AssetExecutionContext, config: SyncPlanConfig, entrasync: EntrasyncResource,
                  entra_group_members: pd.DataFrame, universal_users: pd.DataFrame,
                  zammad_users: pd.DataFrame) -> Iterator[Any]:
        profile = entrasync.profile(context.partition_key)
        try:
            plan = sync.sync_plan(profile, universal_users, zammad_users, sync.zammad_roles(profile))
            approved = max(config.approve_deactivations, int(context.run.tags.get(APPROVAL_TAG, "0") or 0))
            per_group = sync.members_per_group(entra_group_members, profile.config)
            verdict = sync.judge(profile, plan, per_group, zammad_users, approved)
            if verdict.blocked:
                _report_blocked(context, profile, plan, verdict.summary)
            else:
                audit = profile.audit()
                try:
                    sync.record_approval(audit, context.run_id, profile.name, verdict, dry_run=False)
                finally:
                    audit.close()
        finally:
            profile.close()
        counts = action_counts(plan)
        context.log.info("plan: %s", counts)
        preview = plan[plan["action"] != Action.NOOP.value].groupby("action", sort=False).head(10)
        yield dg.Output(plan, metadata={
            "dagster/row_count": len(plan),
            **{a: dg.MetadataValue.int(n) for a, n in counts.items()},
            "role_mapping_conflicts": int(plan["reason"].fillna("").str.contains(ROLE_MERGE_NOTE).sum()),
            "preview": dg.MetadataValue.md(_md_table(preview, ["action", "email", "zammad_id", "reason"])),
            "safety": verdict.summary,
        })
        yield checks.sync_plan_schema_result(plan)
        yield checks.sync_plan_safety_result(verdict)


    @dg.asset(
        group_name=GROUP, partitions_def=partitions, owners=OWNERS, kinds={"zammad"}, code_version="1",
        pool="zammad",
        description="Zammad's users brought to the plan: the writes, one audit row each. Holds metadata only "
                    "(counts, dry_run, failures, where the audit is).",
    )
    def zammad_sync(context: dg.AssetExecutionContext, config: SyncApplyConfig, entrasync: EntrasyncResource,
                    sync_plan: pd.DataFrame, zammad_users: pd.DataFrame) -> dg.MaterializeResult:
        profile = entrasync.profile(context.partition_key)
        dry_run = profile.settings.dry_run if config.dry_run is None else config.dry_run
        audit = profile.audit()
        try:
            if not dry_run:
                sync.require_entra_attributes(zammad_users)
            # The blocking safety check on sync_plan already passed, or this step would not run.
            result = sync.apply(profile, sync_plan, context.run_id, dry_run, audit)
            sync.notify(profile, sync_plan, result, _run_url(context, profile))
        finally:
            audit.close()
            profile.close()
        if result.failed:
            context.log.warning("%d writes failed: %s", result.failed, result.failures[:5])
        metadata: dict[str, Any] = {k: dg.MetadataValue.int(v) for k, v in result.counts.items()}
        metadata.update({
            "dry_run": dg.MetadataValue.bool(dry_run),
            "blocked": dg.MetadataValue.bool(bool(result.blocked)),
            "stopped": result.stopped or "",
            "audit": f"entrasync audit --run {context.run_id}",
            "examples": dg.MetadataValue.md(_md_table(pd.DataFrame(example_changes(sync_plan, 10)),
                                                      ["action", "email", "reason"])
                                            if example_changes(sync_plan, 10) else "_none_"),
        })
        if result.stopped:
            raise dg.Failure(description=result.stopped, metadata=metadata)
        return dg.MaterializeResult(metadata=metadata)

    return [entra_group_members, universal_users, zammad_users, sync_plan, zammad_sync]
