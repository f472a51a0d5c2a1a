"""One measured sync in its own process: wall time per stage, peak RSS, transport retries.

Calls the same step functions as the Dagster assets and the CLI (``entrasync_pipeline.sync``).
Prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import uuid

from entrasync_pipeline import sync
from entrasync_pipeline.settings import load_settings


def main(config: str, profile_name: str = "bench") -> None:
    settings = load_settings(config)
    profile = sync.Profile(profile_name, settings)
    stages: dict[str, float] = {}
    started = time.perf_counter()

    def stage(name: str, fn, *args):
        t0 = time.perf_counter()
        value = fn(*args)
        stages[name] = round(time.perf_counter() - t0, 3)
        return value

    stage("token", lambda: profile.graph().credential.token())
    members = stage("graph_read", sync.read_entra_members, profile)
    per_group = sync.members_per_group(members, profile.config)
    users = stage("normalize", sync.universal_users, members, profile.config)
    del members
    zammad = stage("zammad_read", sync.read_zammad_users, profile)
    plan = stage("plan", sync.sync_plan, profile, users, zammad, None)
    verdict = sync.judge(profile, plan, per_group, zammad, approved=len(plan))
    audit = profile.audit()
    result = stage("apply", sync.apply, profile, plan, f"bench-{uuid.uuid4()}", False, audit,
                   verdict.summary if verdict.blocked else None)
    audit.close()
    wall = time.perf_counter() - started
    transports = [profile.graph().transport, profile.zammad().transport]
    print(json.dumps({
        "wall_s": round(wall, 3), "stages": stages, "counts": result.counts, "blocked": result.blocked,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "retries": sum(t.retries for t in transports), "throttled": sum(t.throttled for t in transports),
        "min_concurrency": getattr(result, "min_concurrency", None),
    }))
    profile.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
