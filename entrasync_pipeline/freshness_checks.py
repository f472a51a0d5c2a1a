"""The freshness check of each profile's ``zammad_sync``: a full sync succeeded within ``max_age_h``.

One non-blocking check per profile (``fresh_full_sync_<profile>``), so the UI shows each profile's
state on the asset's Checks tab. The daemon's health sensor evaluates it every
``schedule.health_interval_s`` and records a result whenever it changes (a runless check
evaluation); "Execute" in the UI evaluates it on demand the same way. It is not part of the sync
job: a check run by the sync itself would only ever see a run that is still going.

Dagster's stock last-update freshness check would be fooled here: a targeted run materializes
``zammad_sync`` too, but says nothing about the rest of the directory. This check reads the last
successful *full* run (``health.run_history``).
"""

import hashlib
import re
import time
from typing import Any

import dagster as dg

from entrasync_pipeline.freshness import Facts, Limits, duration, is_stale
from entrasync_pipeline.health import History, limits_of, run_history
from entrasync_pipeline.resources import EntrasyncResource

FRESHNESS_CHECK = "fresh_full_sync"
ASSET = "zammad_sync"


def freshness_check_name(profile: str) -> str:
    """``fresh_full_sync_<profile>``; a name Dagster would refuse ('.', '-') gets a hash so it stays unique."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", profile)
    if safe != profile:
        safe += "_" + hashlib.sha256(profile.encode()).hexdigest()[:6]
    return f"{FRESHNESS_CHECK}_{safe}"


def _metadata(profile: str, history: History, facts: Facts, limits: Limits) -> dict[str, Any]:
    last = history.last_full_success
    metadata: dict[str, Any] = {"profile": profile, "max_age_h": dg.MetadataValue.float(limits.max_age_h)}
    if last is not None and last.ended is not None:
        metadata["last_full_success"] = dg.MetadataValue.timestamp(last.ended)
        metadata["last_full_run"] = dg.MetadataValue.dagster_run(last.run_id)
        metadata["age_h"] = dg.MetadataValue.float(round((facts.now - last.ended) / 3600, 2))
    return metadata


def _description(history: History, facts: Facts, limits: Limits) -> str:
    last = history.last_full_success
    if last is None or last.ended is None:
        return f"No successful full sync yet (limit {limits.max_age_h:g} h)."
    return f"Last successful full sync ended {duration(facts.now - last.ended)} ago (limit {limits.max_age_h:g} h)."


def freshness_evaluation(profile: str, history: History, facts: Facts, limits: Limits) -> dg.AssetCheckEvaluation:
    """The check's result as the health sensor records it (a runless evaluation)."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(ASSET),
        check_name=freshness_check_name(profile),
        passed=not is_stale(facts, limits),
        metadata=_metadata(profile, history, facts, limits),
        severity=dg.AssetCheckSeverity.ERROR,
        description=_description(history, facts, limits),
    )


def _freshness_check(profile: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=ASSET,
        name=freshness_check_name(profile),
        blocking=False,
        description=f"Profile {profile}: the last successful full sync is younger than freshness.max_age_h "
        "(targeted runs do not count). Evaluated by the entrasync_health sensor.",
    )
    def fresh_full_sync(context: dg.AssetCheckExecutionContext, entrasync: EntrasyncResource) -> dg.AssetCheckResult:
        settings = entrasync.settings()
        history = run_history(context.instance, settings, profile)
        facts, limits = history.facts(time.time()), limits_of(settings, profile)
        return dg.AssetCheckResult(
            passed=not is_stale(facts, limits),
            metadata=_metadata(profile, history, facts, limits),
            severity=dg.AssetCheckSeverity.ERROR,
            description=_description(history, facts, limits),
        )

    return fresh_full_sync


def build_freshness_checks(profiles: list[str]) -> list[dg.AssetChecksDefinition]:
    return [_freshness_check(profile) for profile in profiles]
