"""The change-feed scenarios of `make bench`: a targeted run for 10 changes, an idle sensor tick, and
the latency from a Graph change to the Zammad write with the daemon running.

They run on the 100,000-user tenant after ``nochange_100k`` (so the profile's links exist), each
measured in its own process like ``bench.sync_once``:

- ``python -m bench.feed tick CONFIG CURSOR_FILE [--twice]``: feed steps as the sensor takes them
  (``feed.advance`` with the audit store's ``known_users``), the cursor kept in a file; with
  ``--twice`` the second step is the measured one (a sensor process keeps its token between ticks);
- ``python -m bench.feed targeted CONFIG ID...``: the job scoped to those ids, as the sensor launches it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.baselines import app_token

ROOT = Path(__file__).resolve().parents[1]
SENSOR = "entrasync_membership_delta"


# --- measured in their own process ----------------------------------------------------------------
def tick(config: str, cursor_file: str, *flags: str) -> None:
    from entrasync_pipeline.feed import FeedPosition, advance
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.settings import load_settings

    settings = load_settings(config)
    path = Path(cursor_file)
    raw = json.loads(path.read_text()) if path.exists() else None
    with ProfileRuntime("bench", settings) as runtime:

        def known(ids: set[str]) -> set[str]:
            return set(runtime.audit.known_users("bench", ids))

        steps = 2 if "--twice" in flags else 1
        timings = []
        for _ in range(steps):
            if steps == 2 and timings:
                _mark("measured tick starts")
            started = time.perf_counter()
            step = advance(runtime.graph, runtime.config, FeedPosition.from_json(raw), known)
            timings.append(time.perf_counter() - started)
            raw = step.position.to_json()
    path.write_text(json.dumps(raw))
    print(
        json.dumps(
            {"targets": sorted(step.targets), "full_run": step.full_run, "note": step.note, "wall_s": timings[-1]}
        )
    )


def _mark(text: str) -> None:
    """Tells the parent (on stderr) that the measured part starts; waits until it zeroed the counters."""
    print(text, file=sys.stderr, flush=True)
    sys.stdin.readline()


def targeted(config: str, *ids: str) -> None:
    from bench.sync_once import step_durations
    from entrasync_pipeline.definitions import build_definitions
    from entrasync_pipeline.runs import cli_instance, execute_sync
    from entrasync_pipeline.settings import load_settings

    settings = load_settings(config)
    defs = build_definitions(list(settings.profiles), settings.schedule, config)
    started = time.perf_counter()
    with cli_instance() as instance:
        outcome = execute_sync(defs, settings, "bench", instance, log_level="WARNING", targets=list(ids))
        wall = time.perf_counter() - started
        stages = step_durations(instance, outcome.run_id or "")
    if outcome.status != "ok":
        raise SystemExit(f"run {outcome.run_id} ended {outcome.status}: {outcome.error or outcome.blocked_reason}")
    print(
        json.dumps(
            {
                "wall_s": round(wall, 3),
                "stages": stages,
                "counts": outcome.counts,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


# --- driven by bench.run ------------------------------------------------------------------------------
class Tenant:
    """The sandbox tenant changed through the real Graph write API (the admin app)."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox, info = sandbox, sandbox.info
        token = app_token(sandbox.session, info, "admin_app")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.base = f"{info['graph_url']}/v1.0"
        self.group = info["groups"]["All Staff"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.sandbox.session.request(method, f"{self.base}{path}", json=body, headers=self.headers)
        response.raise_for_status()
        return response.json() if response.content else None

    def members(self, start: int, count: int) -> list[str]:
        page = self._call("GET", f"/groups/{self.group}/members?$select=id&$top={start + count}")
        return [m["id"] for m in page["value"][start : start + count]]

    def hire(self, n: int) -> str:
        user = self._call(
            "POST",
            "/users",
            {
                "accountEnabled": True,
                "displayName": f"Feed Hire {n}",
                "mailNickname": f"feedhire{n}",
                "userPrincipalName": f"feedhire{n}@bench.example",
                "mail": f"feedhire{n}@bench.example",
                "givenName": "Feed",
                "surname": f"Hire{n}",
                "passwordProfile": {"password": "x"},
            },
        )
        self.add(user["id"])
        return str(user["id"])

    def add(self, user_id: str) -> None:
        body = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}"}
        self._call("POST", f"/groups/{self.group}/members/$ref", body)

    def remove(self, user_id: str) -> None:
        self._call("DELETE", f"/groups/{self.group}/members/{user_id}/$ref")

    def patch(self, user_id: str, **changes: Any) -> None:
        self._call("PATCH", f"/users/{user_id}", changes)


def _run(args: list[str], env: dict[str, str], mark: bool = False, sandbox: Any = None) -> dict[str, Any]:
    """``python -m ARGS`` → its JSON; with ``mark``, zero the sandbox's counters when it says so."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if mark:
        assert proc.stderr is not None and proc.stdin is not None
        for line in proc.stderr:
            if "measured tick starts" in line:
                sandbox.zero_stats()
                proc.stdin.write("go\n")
                proc.stdin.flush()
                break
    out, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{args}: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def scenarios(sandbox: Any, config: Path, env: dict[str, str], latency_ms: int) -> dict[str, Any]:
    """incremental_100k, idle_tick_100k, sensor_latency on a tenant a full run has synced."""
    cursor = sandbox.state / "feed-cursor.json"
    cursor.unlink(missing_ok=True)
    sandbox.latency(latency_ms)
    users = len(sandbox.control("GET", "graph", "state")["groups"][sandbox.info["groups"]["All Staff"]])
    _run(["bench.feed", "tick", str(config), str(cursor)], env)  # the baseline
    tenant = Tenant(sandbox)
    leavers, disabled, edited = tenant.members(0, 2), tenant.members(2, 1), tenant.members(3, 3)
    for user in leavers:
        tenant.remove(user)
    tenant.patch(disabled[0], accountEnabled=False)
    for user in edited:
        tenant.patch(user, department="Feed Changed")
    hires = [tenant.hire(n) for n in range(4)]
    fed = _run(["bench.feed", "tick", str(config), str(cursor)], env)
    expected = set(leavers + disabled + edited + hires)
    sandbox.zero_stats()
    ours = _run(["bench.feed", "targeted", str(config), *fed["targets"]], env)
    routes = sandbox.requests()
    results: dict[str, Any] = {
        "incremental_100k": {
            "users": users,
            "latency_ms": latency_ms,
            "changes": {"removed": 2, "disabled": 1, "edited": 3, "hired": 4},
            "feed_found": len(expected & set(fed["targets"])),
            "feed_targets": len(fed["targets"]),
            "wall_s": ours["wall_s"],
            "stages": ours["stages"],
            "counts": ours["counts"],
            "requests_total": sum(routes.values()),
            "requests": routes,
            "peak_rss_mb": ours["peak_rss_mb"],
        }
    }
    idle = _run(["bench.feed", "tick", str(config), str(cursor), "--twice"], env, mark=True, sandbox=sandbox)
    routes = sandbox.requests()
    results["idle_tick_100k"] = {
        "users": users,
        "latency_ms": latency_ms,
        "wall_s": round(idle["wall_s"], 3),
        "targets": len(idle["targets"]),
        "requests_total": sum(routes.values()),
        "zammad_requests": sum(v for k, v in routes.items() if k.split(" ", 1)[-1].startswith("/api/")),
        "requests": routes,
    }
    if os.environ.get("ENTRASYNC_BENCH_NO_DAEMON") != "1":
        results["sensor_latency"] = sensor_latency(sandbox, config, env, tenant, users, latency_ms)
    return results


# --- the daemon ------------------------------------------------------------------------------------------
def sensor_latency(
    sandbox: Any, config: Path, env: dict[str, str], tenant: Tenant, users: int, latency_ms: int, trials: int = 3
) -> dict[str, Any]:
    """The daemon runs the sensor (30 s); time from a disable in Graph to the user inactive in Zammad."""
    home = sandbox.state / "daemon-home"
    shutil.rmtree(home, ignore_errors=True)  # a fresh instance: no sensor cursor of an earlier sandbox
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    daemon_env = {**env, "DAGSTER_HOME": str(home), "ENTRASYNC_CONFIG": str(config)}
    bin_dir = Path(sys.executable).parent
    started = subprocess.run(
        [str(bin_dir / "dagster"), "sensor", "start", "entrasync_membership_delta", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if started.returncode != 0:
        raise RuntimeError(started.stderr[-2000:])
    log = open(home / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=daemon_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    latencies: list[float] = []
    try:
        _wait_for_baseline(home, daemon_env)
        for trial, user in enumerate(tenant.members(10, trials)):
            zammad_id = _zammad_id(sandbox, user)
            changed = time.monotonic()
            tenant.patch(user, accountEnabled=False)
            while _zammad_active(sandbox, zammad_id):
                if time.monotonic() - changed > 300:
                    raise RuntimeError(f"trial {trial}: no write after 300 s; see {home / 'daemon.log'}")
                time.sleep(0.25)
            latencies.append(round(time.monotonic() - changed, 2))
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        log.close()
    return {
        "users": users,
        "latency_ms": latency_ms,
        "interval_s": 30,
        "latency_s": statistics.median(latencies),
        "latencies_s": latencies,
    }


def _wait_for_baseline(home: Path, env: dict[str, str]) -> None:
    """The sensor's first tick takes the baseline; changes made before it would not be seen."""
    import dagster as dg

    deadline = time.monotonic() + 300
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            while time.monotonic() < deadline:
                states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR]
                ticks = [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=5)]
                if any(t.cursor for t in ticks):
                    return
                time.sleep(1)
    finally:
        os.environ.pop("DAGSTER_HOME", None)
    raise RuntimeError(f"the sensor took no baseline within 300 s; see {home / 'daemon.log'}")


def _zammad(sandbox: Any, path: str, **params: Any) -> Any:
    response = sandbox.session.get(
        f"{sandbox.info['zammad_url']}/api/v1{path}",
        params=params or None,
        headers={"Authorization": f"Token token={sandbox.info['zammad_token']}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def _zammad_id(sandbox: Any, entra_key: str) -> int:
    body = {"condition": {"user.entra_key": {"operator": "is", "value": entra_key}}, "limit": 10}
    response = sandbox.session.post(
        f"{sandbox.info['zammad_url']}/api/v1/users/search",
        json=body,
        headers={"Authorization": f"Token token={sandbox.info['zammad_token']}"},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json()[0]["id"])


def _zammad_active(sandbox: Any, zammad_id: int) -> bool:
    return bool(_zammad(sandbox, f"/users/{zammad_id}")["active"])


if __name__ == "__main__":
    {"tick": tick, "targeted": targeted}[sys.argv[1]](*sys.argv[2:])
