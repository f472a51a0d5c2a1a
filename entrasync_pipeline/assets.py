"""The five assets of one sync (DESIGN.md §1); each calls the matching step in ``steps``.

Assets are nouns for the state they hold. They log counts, return metadata the UI charts over
time (integers per action), and decide nothing themselves. The raw snapshots carry pandera
Dagster types (a bad frame stores nothing); ``universal_users`` and ``sync_plan`` carry blocking
checks, so ``zammad_sync`` never runs on an invalid or unsafe plan. Every step that reads or
writes holds the profile's lease (``lease``): one run per profile, whoever started it.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type

from entrasync_pipeline import checks, steps
from entrasync_pipeline.apply import ApplyResult, recorded_counts
from entrasync_pipeline.audit import AuditFilter
from entrasync_pipeline.entra.errors import (
    DeltaResetRequired,
    EntraAuthError,
    GraphAuthorizationError,
    GraphResponseError,
    GraphTransportError,
)
from entrasync_pipeline.lease import Lease, ProfileBusy
from entrasync_pipeline.normalize import INVALID_VALUES, skipped_member_types
from entrasync_pipeline.plan import (
    Action,
    action_counts,
    drift_count,
    group_access_changes,
    organization_counts,
    plan_changes,
    role_merge_count,
)
from entrasync_pipeline.resources import EntrasyncResource, Progress, SyncRunOptions
from entrasync_pipeline.run_options import (
    INTERRUPTED_TEXT,
    RUN_OPTIONS_RESOURCE,
    TAG_APPROVE,
    TAG_SCOPE,
    RunOptions,
    RunOptionsError,
    trigger_of,
)
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.safety import managed_count
from entrasync_pipeline.schemas import ENTRA_MEMBERS, ZAMMAD_USERS
from entrasync_pipeline.settings import ConfigError
from entrasync_pipeline.targeted import TARGETS_TRACE, TARGETS_WRITES, TRACE_LIMIT, trace, write_outcomes
from entrasync_pipeline.zammad.errors import ZammadAuthError, ZammadResponseError, ZammadTransportError

GROUP = "entrasync"
OWNERS = ["team:it-identity"]
READ_RETRY = dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
PREVIEW_ROWS = 10
SCOPE = "scope"  # metadata: "full" or "targeted" (then "targets": how many)
MANAGED_USERS = "managed_users"
# universal_users: per typed field, the values that did not convert and one reason (entrasync status reads it).
INVALID_BY_FIELD = "invalid_values_by_field"
# Writes that change a user's Zammad group access (sync_plan: planned; zammad_sync: sent, or would be).
GROUP_ACCESS_CHANGES = "group_access_changes"
KEPT_ACTIVE = [a.value for a in (Action.UPDATE, Action.REACTIVATE, Action.RELINK, Action.NOOP, Action.GRACE)]

EntraMembersType = pandera_schema_to_dagster_type(ENTRA_MEMBERS)
ZammadUsersType = pandera_schema_to_dagster_type(ZAMMAD_USERS)


# --- wiring helpers ------------------------------------------------------------------------------
def _run_alive(instance: dg.DagsterInstance) -> Callable[[str], bool | None]:
    """Whether a lease holder's run still runs, as far as this instance knows (None: not its run)."""

    def alive(run_id: str) -> bool | None:
        run = instance.get_run_by_id(run_id)
        return None if run is None else not run.is_finished

    return alive


# Entra's token endpoint says these when it is the one at fault; any other refusal is the config's.
_TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


def _lasting(exc: BaseException) -> bool:
    """A failure that READ_RETRY's waits cannot cure: a wrong config, credentials or permissions
    Entra or Zammad refused, a request Graph or Zammad calls wrong (4xx: say, a mapped attribute
    Graph does not have), a proxy that refuses the tunnel. Failing at once spares the admin a
    minute of retries before the error they must fix."""
    if isinstance(exc, (ConfigError, GraphAuthorizationError, ZammadAuthError)):
        return True
    if isinstance(exc, (GraphResponseError, ZammadResponseError)) and not isinstance(exc, DeltaResetRequired):
        return 400 <= exc.status < 500 and exc.status not in (408, 429)  # the request itself is wrong
    if isinstance(exc, EntraAuthError):
        return exc.error not in _TRANSIENT_TOKEN_ERRORS
    return isinstance(exc, (GraphTransportError, ZammadTransportError)) and exc.kind == "proxy"


@contextmanager
def _held(context: dg.AssetExecutionContext, entrasync: EntrasyncResource) -> Iterator[tuple[ProfileRuntime, Lease]]:
    """The profile's runtime with its lease held for this run (waits while another run holds it)."""
    try:
        with entrasync.runtime(context.partition_key) as runtime:
            lease = runtime.lease(context.run.run_id, alive=_run_alive(context.instance))
            with lease.held():
                yield runtime, lease
    except ProfileBusy as exc:  # waited long enough: retrying the step would only wait again
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
        # Dagster retries an interrupted step that has a retry policy (made for preempted pods); a
        # Ctrl-C or a stop request from the UI must end the run, not start the read again.
        raise dg.Failure(description=INTERRUPTED_TEXT, allow_retries=False) from None
    except Exception as exc:
        if not _lasting(exc):
            raise
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def _options(
    context: dg.AssetExecutionContext, run_options: SyncRunOptions, runtime: ProfileRuntime, announce: bool = False
) -> RunOptions:
    """The run's options; ``announce`` logs them (once per run: every log line is an event stored)."""
    try:
        options = run_options.resolve(context.run.tags, runtime.settings)
    except RunOptionsError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if announce:
        context.log.info(
            "run of %s (trigger %s, %s%s): dry_run=%s (from %s), approved deactivations=%d (from %s)",
            runtime.name,
            trigger_of(context.run.tags),
            options.scope,
            f", {len(options.targets)} users" if options.targets is not None else "",
            options.dry_run,
            options.dry_run_from,
            options.approve_deactivations,
            options.approval_from,
        )
    return options


def _column_schema(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dg.TableSchema:
    described = {name: column.description or "" for name, column in schema.columns.items()}
    return dg.TableSchema(
        columns=[dg.TableColumn(str(c), str(frame[c].dtype), description=described.get(c, "")) for c in frame.columns]
    )


def _cell(value: Any) -> str:
    return str(value if value is not None else "")[:80].replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "_none_"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _preview(plan: pd.DataFrame) -> str:
    """Deactivations first, then the other decisions, each with the fields it changes."""
    rows = [
        {
            **c,
            "fields": ", ".join(
                f"{k}: {v['before']} → {v['after']}"
                for k, v in c["fields"].items()
                if k not in ("entra_object_type", "entrasync_profile")
            ),
        }
        for c in plan_changes(plan, limit=PREVIEW_ROWS)
    ]
    return _md_table(rows, ["action", "email", "zammad_id", "fields", "reason"])


def _how_to_approve(profile: str, deactivations: int) -> str:
    """The approval in Dagster terms: the run tag or the launchpad config, for this partition."""
    return (
        f"To approve, launch entrasync_sync_job for partition {profile} again with the run tag "
        f"{TAG_APPROVE}={deactivations}, or with the launchpad config resources: {{{RUN_OPTIONS_RESOURCE}: "
        f"{{config: {{approve_deactivations: {deactivations}}}}}}} (from a shell: entrasync sync --profile "
        f"{profile} --approve-deactivations {deactivations})."
    )


def _run_url(context: dg.AssetExecutionContext, runtime: ProfileRuntime) -> str | None:
    base = runtime.settings.dagster_url
    return f"{base.rstrip('/')}/runs/{context.run.run_id}" if base else None


def _apply_metadata(result: ApplyResult, plan: pd.DataFrame, run_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {k: dg.MetadataValue.int(v) for k, v in result.counts.items()}
    metadata.update(
        {
            "dry_run": dg.MetadataValue.bool(result.dry_run),
            "blocked": dg.MetadataValue.bool(bool(result.blocked)),
            "stopped": result.stopped or "",
            "audit": f"entrasync audit --run {run_id}",
            "examples": dg.MetadataValue.md(_preview(plan)),
            "min_concurrency": dg.MetadataValue.int(result.min_concurrency or 0),
            GROUP_ACCESS_CHANGES: dg.MetadataValue.int(group_access_changes(plan)),
        }
    )
    return metadata


def _interrupted(runtime: ProfileRuntime, plan: pd.DataFrame, run_id: str, options: RunOptions) -> dg.Failure:
    """The failure of an apply stopped mid-way, with the counts of what it really did.

    The apply never returned its counts, so they are read back from the run's audit rows (the
    writes recorded before the stop): the run's summary, ``--json`` and ``status`` then say what
    Zammad now holds, not zero.
    """
    counts = recorded_counts(runtime.audit.query(AuditFilter(run_id=run_id)), plan)
    metadata: dict[str, Any] = {k: dg.MetadataValue.int(v) for k, v in counts.items()}
    metadata.update(
        {
            **_scope_metadata(options),
            "dry_run": dg.MetadataValue.bool(options.dry_run),
            "audit": f"entrasync audit --run {run_id}",
        }
    )
    return dg.Failure(description=INTERRUPTED_TEXT, metadata=metadata, allow_retries=False)


def _http_metadata(runtime: ProfileRuntime, client: str) -> dict[str, Any]:
    """Retries and throttling the step met: how hard the service pushed back."""
    transport = (runtime.graph if client == "graph" else runtime.zammad).transport
    return {
        "http_retries": dg.MetadataValue.int(transport.retries),
        "http_throttled": dg.MetadataValue.int(transport.throttled),
    }


def _scope_metadata(options: RunOptions) -> dict[str, Any]:
    """Every asset of a run says its scope, so a targeted table is never taken for a snapshot."""
    if options.targets is None:
        return {SCOPE: "full"}
    return {SCOPE: "targeted", "targets": dg.MetadataValue.int(len(options.targets))}


def _scope_of_frame(members: pd.DataFrame) -> dict[str, Any]:
    targets = members.attrs.get("targets")
    if targets is None:
        return {SCOPE: "full"}
    return {SCOPE: "targeted", "targets": dg.MetadataValue.int(len(targets))}


def _managed_population(context: dg.AssetExecutionContext, zammad: pd.DataFrame) -> int:
    """The managed users a targeted run's share limit is taken of: those the profile's latest
    successful full run left in Zammad. Without one on record, only the targeted users: that holds
    more back, never less."""
    instance, profile = context.instance, context.partition_key
    runs = instance.get_run_records(
        dg.RunsFilter(
            job_name=context.job_name,
            statuses=[dg.DagsterRunStatus.SUCCESS],
            tags={"dagster/partition": profile, TAG_SCOPE: "full"},
        ),
        limit=1,
    )
    for run in runs:
        for entry in instance.all_logs(run.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization is not None and materialization.asset_key == dg.AssetKey("zammad_sync"):
                managed = materialization.metadata.get(MANAGED_USERS)
                if managed is not None:
                    return int(managed.value)
    return managed_count(zammad, profile)


def _managed_after(plan: pd.DataFrame, result: ApplyResult) -> int:
    """Managed users once the plan is applied: the linked users it keeps active, and those it created."""
    if plan.empty:
        return 0
    kept = plan["action"].isin(KEPT_ACTIVE) & plan["zammad_id"].notna()
    return int(kept.sum()) + (0 if result.dry_run else int(result.counts.get("created", 0)))


# --- the assets ----------------------------------------------------------------------------------
def build_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The five assets, partitioned by sync profile."""
    common: dict[str, Any] = {"group_name": GROUP, "partitions_def": partitions, "owners": OWNERS, "code_version": "1"}

    @dg.asset(
        **common,
        kinds={"microsoft", "pandas"},
        dagster_type=EntraMembersType,
        retry_policy=READ_RETRY,
        description="Raw snapshot of the configured Entra groups: one row per (group, member) with its "
        "@odata.type and the Graph properties the mapping selects; every page read.",
    )
    def entra_group_members(
        context: dg.AssetExecutionContext,
        entrasync: EntrasyncResource,
        run_options: SyncRunOptions,
        progress: dg.ResourceParam[Progress],
    ) -> dg.Output[pd.DataFrame]:
        with _held(context, entrasync) as (runtime, _):
            options = _options(context, run_options, runtime, announce=True)
            if options.targets is None:
                members = steps.read_entra_members(runtime, progress)
            else:
                members = steps.read_targeted_members(runtime, steps.with_neighbours(runtime, options.targets))
            per_group = steps.members_per_group(members, runtime.config)
            skipped = skipped_member_types(members, with_contacts=runtime.config.contacts != "none")
            contacts_read = steps.contacts_read(members)
            http = _http_metadata(runtime, "graph")
        return dg.Output(
            members,
            metadata={
                **_scope_metadata(options),
                "dagster/row_count": len(members),
                "dagster/column_schema": _column_schema(ENTRA_MEMBERS, members),
                "users_per_group": dg.MetadataValue.json(per_group),
                "member_types_skipped": dg.MetadataValue.json(skipped),
                "contacts_read": contacts_read,
                **http,
            },
        )

    @dg.asset(
        **common,
        kinds={"pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                checks.UNIVERSAL_USERS_CHECK,
                asset="universal_users",
                blocking=True,
                description="pandera schema of the universal users",
            )
        ],
        description="One row per Entra user in scope, normalized into the form Zammad stores (email, names, "
        "phones, department, mapped extras, entra_key, roles, source groups, skip_reason).",
    )
    def universal_users(
        context: dg.AssetExecutionContext, entrasync: EntrasyncResource, entra_group_members: pd.DataFrame
    ) -> Iterator[Any]:
        settings = entrasync.settings()
        users = steps.universal_users(entra_group_members, settings.profiles[context.partition_key])
        skipped = users[users["skip_reason"].notna()]
        if len(skipped):
            context.log.warning("%d users skipped: %s", len(skipped), skipped["skip_reason"].value_counts().to_dict())
        kept = users[users["phone_problem"].notna()] if "phone_problem" in users else users.iloc[0:0]
        if len(kept):
            context.log.warning("%d users have phone numbers kept as typed (not valid numbers)", len(kept))
        invalid = users.attrs.get(INVALID_VALUES, {})
        for field, found in invalid.items():
            context.log.warning(
                "%d values of %s do not convert and were left out, e.g. %s", len(found), field, found[0]["reason"]
            )
        yield dg.Output(
            users,
            metadata={
                **_scope_of_frame(entra_group_members),
                "dagster/row_count": len(users),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(str(c), str(users[c].dtype)) for c in users.columns]
                ),
                "skipped": len(skipped),
                "skip_reasons": dg.MetadataValue.md(
                    _md_table(skipped.head(20).to_dict("records"), ["entra_key", "upn", "skip_reason"])
                ),
                "phones_kept_as_typed": len(kept),
                "phone_problems": dg.MetadataValue.md(
                    _md_table(kept.head(20).to_dict("records"), ["entra_key", "upn", "phone_problem"])
                ),
                "invalid_values": sum(map(len, invalid.values())),
                INVALID_BY_FIELD: dg.MetadataValue.json(
                    {f: {"count": len(rows), "example": rows[0]["reason"]} for f, rows in invalid.items()}
                ),
                "invalid_value_examples": dg.MetadataValue.md(
                    _md_table(
                        [{"field": f, **row} for f, rows in invalid.items() for row in rows[:5]],
                        ["field", "entra_key", "value", "reason"],
                    )
                ),
            },
        )
        yield checks.universal_users_result(users)

    @dg.asset(
        **common,
        kinds={"pandas"},
        dagster_type=ZammadUsersType,
        retry_policy=READ_RETRY,
        description="Snapshot of every Zammad user (system and inactive users included), every page.",
    )
    def zammad_users(
        context: dg.AssetExecutionContext,
        entrasync: EntrasyncResource,
        run_options: SyncRunOptions,
        progress: dg.ResourceParam[Progress],
    ) -> dg.Output[pd.DataFrame]:
        with _held(context, entrasync) as (runtime, _):
            options = _options(context, run_options, runtime)
            if options.targets is None:
                users = steps.read_zammad_users(runtime, progress)
            else:
                users = steps.read_targeted_zammad_users(runtime, steps.with_neighbours(runtime, options.targets))
            http = _http_metadata(runtime, "zammad")
        keyed = int((users["entra_key"].fillna("") != "").sum()) if not users.empty else 0
        return dg.Output(
            users,
            metadata={
                **_scope_metadata(options),
                "dagster/row_count": len(users),
                "dagster/column_schema": _column_schema(ZAMMAD_USERS, users),
                "with_entra_key": keyed,
                "inactive": int((~users["active"]).sum()) if not users.empty else 0,
                "has_entra_attributes": bool(users.attrs.get("has_entra_attributes", False)),
                **http,
            },
        )

    @dg.asset(
        **common,
        kinds={"pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                checks.SYNC_PLAN_SCHEMA_CHECK,
                asset="sync_plan",
                blocking=True,
                description="pandera schema of the plan",
            ),
            dg.AssetCheckSpec(
                checks.SYNC_PLAN_SAFETY_CHECK,
                asset="sync_plan",
                blocking=True,
                description="empty-read guard and deactivation threshold",
            ),
            dg.AssetCheckSpec(
                checks.SYNC_PLAN_FIELDS_CHECK,
                asset="sync_plan",
                blocking=True,
                description="Zammad holds entrasync's identity attributes and every mapped field, with its type "
                "(fix: entrasync zammad-setup)",
            ),
            dg.AssetCheckSpec(
                checks.SYNC_PLAN_GROUPS_CHECK,
                asset="sync_plan",
                blocking=True,
                description="every Zammad group named in groups[].zammad_groups exists and is active",
            ),
        ],
        description="One row per decision (create, update, reactivate, relink, deactivate, grace, noop, skip, "
        "conflict, opted_out) with "
        "the changed fields before → after. Blocked plans stay visible here.",
    )
    def sync_plan(
        context: dg.AssetExecutionContext,
        entrasync: EntrasyncResource,
        run_options: SyncRunOptions,
        entra_group_members: pd.DataFrame,
        universal_users: pd.DataFrame,
        zammad_users: pd.DataFrame,
    ) -> Iterator[Any]:
        with _held(context, entrasync) as (runtime, lease):
            options = _options(context, run_options, runtime)
            problems, checked = steps.zammad_field_problems(runtime, zammad_users)
            problems = [*steps.entra_attribute_problems(zammad_users), *problems]  # a dry run is held too
            group_problems, group_options = steps.zammad_group_problems(runtime)
            if options.targets is None:
                plan = steps.compute_sync_plan(
                    runtime, universal_users, zammad_users, remember=not options.dry_run, group_options=group_options
                )
                per_group = steps.members_per_group(entra_group_members, runtime.config)
                verdict = steps.judge(runtime, plan, per_group, zammad_users, options.approve_deactivations)
                story: list[dict[str, Any]] = []
            else:
                targets = steps.with_neighbours(runtime, options.targets)
                zammad_users = steps.with_email_matches(runtime, universal_users, zammad_users)
                plan = steps.compute_sync_plan(
                    runtime, universal_users, zammad_users, targets, not options.dry_run, group_options
                )
                population = _managed_population(context, zammad_users)
                verdict = steps.judge(
                    runtime, plan, {}, zammad_users, options.approve_deactivations, managed=population
                )
                found = entra_group_members.attrs.get("targets", {})
                story = trace(targets, found, universal_users, zammad_users, plan)
            steps.record_approval(runtime.audit, context.run.run_id, runtime.name, verdict, options.dry_run)
            if problems or group_problems:  # nothing Zammad would drop, recast or ignore: hold every write
                held = "; ".join([*problems, *group_problems])
                context.log.warning("apply blocked, Zammad's setup: %s", held)
                steps.apply(runtime, plan, context.run.run_id, options.dry_run, blocked=held)
                lease.release_on_exit = True  # zammad_sync will not run
            elif verdict.blocked:
                context.log.warning("apply blocked: %s", verdict.summary)
                held = steps.apply(runtime, plan, context.run.run_id, options.dry_run, blocked=verdict.summary)
                steps.notify(runtime, plan, held, _run_url(context, runtime))
                lease.release_on_exit = True  # zammad_sync will not run
        counts = action_counts(plan)
        context.log.info("plan: %s", counts)
        yield dg.Output(
            plan,
            metadata={
                **_scope_metadata(options),
                **({TARGETS_TRACE: dg.MetadataValue.json(story[:TRACE_LIMIT])} if story else {}),
                "dagster/row_count": len(plan),
                **{a: dg.MetadataValue.int(n) for a, n in counts.items()},
                "role_mapping_conflicts": role_merge_count(plan),
                GROUP_ACCESS_CHANGES: group_access_changes(plan),
                "drift": drift_count(plan),
                **{name: dg.MetadataValue.int(n) for name, n in organization_counts(plan).items()},
                "preview": dg.MetadataValue.md(_preview(plan)),
                "dry_run": dg.MetadataValue.bool(options.dry_run),
                "safety": verdict.summary,
            },
        )
        yield checks.sync_plan_schema_result(plan)
        yield checks.sync_plan_safety_result(verdict, _how_to_approve(runtime.name, verdict.deactivations))
        yield checks.sync_plan_fields_result(problems, checked)
        yield checks.sync_plan_groups_result(group_problems, bool(group_options))

    @dg.asset(
        **common,
        kinds={"zammad"},
        pool="zammad",
        description="Zammad's users brought to the plan: the writes, one audit row each. Holds metadata only "
        "(counts, dry_run, failures, where the audit is).",
    )
    def zammad_sync(
        context: dg.AssetExecutionContext,
        entrasync: EntrasyncResource,
        run_options: SyncRunOptions,
        progress: dg.ResourceParam[Progress],
        sync_plan: pd.DataFrame,
    ) -> dg.MaterializeResult:
        # The blocking checks on sync_plan passed, or this step would not run.
        with _held(context, entrasync) as (runtime, lease):
            lease.release_on_exit = True  # the run's last step
            options = _options(context, run_options, runtime)
            try:
                result = steps.apply(runtime, sync_plan, context.run.run_id, options.dry_run, progress=progress)
            except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
                raise _interrupted(runtime, sync_plan, context.run.run_id, options) from None
            steps.notify(runtime, sync_plan, result, _run_url(context, runtime))
            metadata = {
                **_scope_metadata(options),
                **_apply_metadata(result, sync_plan, context.run.run_id),
                **_http_metadata(runtime, "zammad"),
            }
            if options.targets is None:  # a full run: what the feed and targeted runs build on
                steps.remember_links(runtime, sync_plan)
                metadata[MANAGED_USERS] = dg.MetadataValue.int(_managed_after(sync_plan, result))
            else:
                rows = runtime.audit.query(AuditFilter(run_id=context.run.run_id))
                writes = write_outcomes(rows, steps.with_neighbours(runtime, options.targets)[:TRACE_LIMIT])
                metadata[TARGETS_WRITES] = dg.MetadataValue.json(writes)
        if result.failed:
            context.log.warning("%d writes failed: %s", result.failed, result.failures[:5])
        if result.stopped:
            raise dg.Failure(description=result.stopped, metadata=metadata)
        if options.counts_for_health:  # the run's last step succeeded: the dead man's switch hears it
            steps.heartbeat(runtime)
        return dg.MaterializeResult(metadata=metadata)

    return [entra_group_members, universal_users, zammad_users, sync_plan, zammad_sync]
