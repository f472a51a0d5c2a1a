"""One measured sync in its own process, through the job path: ``entrasync_sync_job`` in process.

It runs exactly what ``entrasync sync`` runs (``runs.execute_sync`` on DAGSTER_HOME's instance),
so the numbers include Dagster's own cost (events, IO manager, checks). Stage times are the
steps' durations from the run's event log. Prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import dagster as dg

from entrasync_pipeline.definitions import build_definitions
from entrasync_pipeline.runs import cli_instance, execute_sync
from entrasync_pipeline.settings import load_settings

# The bench's stage names (bench/results.json) for the job's steps.
STAGES = {
    "entra_group_members": "graph_read",
    "universal_users": "normalize",
    "zammad_users": "zammad_read",
    "sync_plan": "plan",
    "zammad_sync": "apply",
}


def step_durations(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for entry in instance.all_logs(run_id, of_type=kinds):
        if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif entry.step_key in started:
            durations[STAGES.get(entry.step_key, entry.step_key)] = round(entry.timestamp - started[entry.step_key], 3)
    return durations


def main(config: str, profile: str = "bench") -> None:
    settings = load_settings(config)
    defs = build_definitions(list(settings.profiles), settings.schedule, config)
    started = time.perf_counter()
    with cli_instance() as instance:
        outcome = execute_sync(defs, settings, profile, instance, log_level="WARNING")
        wall = time.perf_counter() - started
        stages = step_durations(instance, outcome.run_id or "")
        metadata: dict[str, Any] = {"http_retries": 0, "http_throttled": 0}
        for entry in instance.all_logs(outcome.run_id or "", of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            values = {k: getattr(v, "value", v) for k, v in entry.asset_materialization.metadata.items()}
            for key in ("http_retries", "http_throttled"):  # summed over the steps that talk HTTP
                metadata[key] += int(values.get(key, 0) or 0)
            if "min_concurrency" in values:
                metadata["min_concurrency"] = values["min_concurrency"]
    if outcome.status != "ok":
        raise SystemExit(f"run {outcome.run_id} ended {outcome.status}: {outcome.error or outcome.blocked_reason}")
    print(
        json.dumps(
            {
                "wall_s": round(wall, 3),
                "stages": stages,
                "counts": outcome.counts,
                "blocked": outcome.blocked_reason,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "retries": int(metadata.get("http_retries", 0)),
                "throttled": int(metadata.get("http_throttled", 0)),
                "min_concurrency": metadata.get("min_concurrency"),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
