"""The CPU-bound steps alone, repeated: ``python -m bench.stages CONFIG [--repeat N] [--profile NAME]``.

Runs ``universal_users`` and ``sync_plan`` of ``entrasync_sync_job`` in process, as ``entrasync
sync`` runs them, on the raw snapshots a previous run stored under DAGSTER_HOME (run
``bench.sync_once`` once first). The snapshots are loaded and stored again through the job's IO
manager before the runs, so the steps find them as they do after the read steps of a full run,
and the lease is released after each run. Prints the step durations of every run and their
minimum, which is what to compare on a busy machine. Needs the sandbox of that run to be up
(``sync_plan`` reads Zammad's roles).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from pathlib import Path

import dagster as dg

from bench.sync_once import step_durations
from entrasync_pipeline.definitions import build_definitions
from entrasync_pipeline.io_manager import FrameFilesystemIOManager
from entrasync_pipeline.jobs import SYNC_JOB_NAME
from entrasync_pipeline.runs import cli_instance
from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import load_settings

RAW = ("entra_group_members", "zammad_users")
STEPS = ("universal_users", "sync_plan")
STAGES = {"universal_users": "normalize", "sync_plan": "plan"}


class _StepCpu(logging.Handler):
    """This process's CPU time from each step's start to its success: steadier than wall time on a
    busy machine (it leaves out the waits for a core and for the disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        step = getattr(event, "step_key", None)
        if event is None or step not in STAGES:
            return
        if event.event_type_value == "STEP_START":
            self.started[step] = time.process_time()
        elif event.event_type_value == "STEP_SUCCESS" and step in self.started:
            self.cpu[f"{STAGES[step]}_cpu"] = round(time.process_time() - self.started[step], 3)


def _with_step_cpu(job: dg.JobDefinition, handler: _StepCpu) -> dg.JobDefinition:
    @dg.logger
    def step_cpu(_context: dg.InitLoggerContext) -> logging.Logger:
        logger = logging.getLogger("entrasync.bench.step_cpu")
        logger.setLevel(logging.DEBUG)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        return logger

    return job.with_logger_defs({**job.loggers, "step_cpu": step_cpu})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--profile", default="bench")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings(args.config)
    defs = build_definitions(list(settings.profiles), settings.schedule, args.config)
    handler = _StepCpu()
    job = _with_step_cpu(defs.resolve_job_def(SYNC_JOB_NAME), handler)
    runs: list[dict[str, float]] = []
    with cli_instance() as instance:
        manager = FrameFilesystemIOManager(instance.storage_directory())
        raw = {}
        for asset in RAW:  # kept alive like the outputs execute_in_process captures
            path = manager._base_path / asset / args.profile  # the fs IO manager's layout
            raw[asset] = manager.load_from_path(None, path)  # type: ignore[arg-type]
            manager.dump_to_path(None, raw[asset], path)  # type: ignore[arg-type]
        for _ in range(args.repeat):
            run_id = str(uuid.uuid4())
            started, cpu = time.perf_counter(), time.process_time()
            result = job.execute_in_process(
                instance=instance,
                partition_key=args.profile,
                asset_selection=[dg.AssetKey(a) for a in STEPS],
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}, "step_cpu": {}}},
                run_id=run_id,
                raise_on_error=False,
            )
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            with ProfileRuntime(args.profile, settings) as runtime:
                runtime.lease(run_id).release()
            if not result.success:
                raise SystemExit(f"run {run_id} failed")
            durations = {**step_durations(instance, run_id), **handler.cpu}
            durations["wall"] = round(wall, 3)
            durations["cpu"] = round(cpu, 3)  # this process only: steadier than wall on a busy machine
            durations["total"] = round(durations["normalize"] + durations["plan"], 3)
            durations["total_cpu"] = round(durations["normalize_cpu"] + durations["plan_cpu"], 3)
            runs.append(durations)
            print(json.dumps(durations), flush=True)
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    print(json.dumps({"min": best, "runs": len(runs), "storage": str(Path(instance.storage_directory()))}))


if __name__ == "__main__":
    main()
