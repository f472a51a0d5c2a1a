"""`make bench`: run the scenarios of issue "Performance and scale", write bench/results.json and BENCHMARKS.md.

Each scenario starts the sandbox with a generated tenant, adds latency to every route, and runs in
separate processes: entrasync's sync (``bench.sync_once``), the I/O floor and the naive baseline
(``bench.baselines``), so their numbers come from the same machine, run and data. Request counts
come from the sandbox's counters. ENTRASYNC_BENCH_SCALE (default 1.0) shrinks every scenario for a
quick look; the reported table always says which sizes ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
import yaml

from bench import feed
from bench.baselines import app_token

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SCALE = float(os.environ.get("ENTRASYNC_BENCH_SCALE", "1.0"))


class SandboxProcess:
    def __init__(self, seed: str, name: str) -> None:
        self.state = OUT / name
        self.state.mkdir(parents=True, exist_ok=True)
        for stale in ("sandbox.json", "audit.db", "audit.db-wal", "audit.db-shm"):
            (self.state / stale).unlink(missing_ok=True)
        self.log = open(self.state / "sandbox.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "entrasync_pipeline.cli",
                "sandbox",
                "serve",
                "--seed",
                seed,
                "--state-dir",
                str(self.state),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while not (self.state / "sandbox.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.state / "sandbox.log").read_text())
            time.sleep(0.2)
        self.info = json.loads((self.state / "sandbox.json").read_text())
        self.session = requests.Session()
        self.session.verify = self.info["ca_bundle"]
        self.session.trust_env = False

    def control(self, method: str, which: str, action: str, payload: Any = None) -> Any:
        base = self.info["graph_url"] if which == "graph" else self.info["zammad_url"]
        response = self.session.request(
            method,
            f"{base}/_sandbox/{action}",
            json=payload,
            timeout=600,
            headers={"X-Sandbox-Key": self.info["control_key"]},
        )
        response.raise_for_status()
        return response.json()

    def latency(self, ms: int, extra: list[dict[str, Any]] | None = None) -> None:
        for which in ("graph", "zammad"):
            rules = (extra or []) + [{"route": "*", "latency_ms": [ms, ms]}]
            self.control("PUT", which, "faults", {"rules": rules, "seed": 1})

    def zero_stats(self) -> None:
        for which in ("graph", "zammad"):
            self.control("DELETE", which, "stats")

    def requests(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for which in ("graph", "zammad"):
            for route, count in self.control("GET", which, "stats")["requests"].items():
                merged[route] = merged.get(route, 0) + count
        return merged

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def write_config(sandbox: SandboxProcess, workers: int) -> Path:
    info = sandbox.info
    config = {
        "tls": {"ca_bundle": info["ca_bundle"]},
        "workers": workers,
        "audit": {"url": f"sqlite:///{sandbox.state / 'audit.db'}"},
        "profiles": {
            "bench": {
                "entra": {
                    "tenant_id": info["tenant_id"],
                    "client_id": info["sync_app"]["client_id"],
                    "credential": "secret",
                    "authority_host": info["graph_url"],
                    "graph_url": info["graph_url"],
                },
                "groups": [{"id": info["groups"]["All Staff"], "name": "All Staff"}],
                "zammad": {"url": info["zammad_url"]},
                "safety": {"max_deactivations": 100000, "max_deactivation_share": 1.0},
            }
        },
    }
    path = sandbox.state / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def bench_env(sandbox: SandboxProcess) -> dict[str, str]:
    """The environment of a measured process: the sandbox's secrets and its own DAGSTER_HOME."""
    env = {
        **os.environ,
        "ENTRA_CLIENT_SECRET": sandbox.info["sync_app"]["client_secret"],
        "ZAMMAD_TOKEN": sandbox.info["zammad_token"],
        "DAGSTER_HOME": str(sandbox.state),
    }
    env.pop("ENTRASYNC_CONFIG", None)
    return env


def _run_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"{args}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(
    sandbox: SandboxProcess,
    workers: int,
    latency_ms: int,
    users: int,
    naive_sample: int | None,
    extra_faults: list[dict[str, Any]] | None = None,
    naive_fresh: bool = False,
) -> dict[str, Any]:
    config = write_config(sandbox, workers)
    env = bench_env(sandbox)
    sandbox.latency(latency_ms, extra_faults)
    sandbox.zero_stats()
    ours = _run_json(["bench.sync_once", str(config)], env)
    routes = sandbox.requests()
    stats = {w: sandbox.control("GET", w, "stats") for w in ("graph", "zammad")}
    sandbox.latency(latency_ms)
    floor = _run_json(["bench.baselines", "floor", str(sandbox.state / "sandbox.json")], env)
    result = {
        "users": users,
        "latency_ms": latency_ms,
        "workers": workers,
        "wall_s": ours["wall_s"],
        "stages": ours["stages"],
        "counts": ours["counts"],
        "requests_total": sum(routes.values()),
        "requests": routes,
        "peak_rss_mb": ours["peak_rss_mb"],
        "floor_wall_s": floor["wall_s"],
        "retries": ours["retries"],
        "throttled": ours["throttled"],
        "early_retries": sum(s["early_retries"] for s in stats.values()),
        "min_concurrency": ours.get("min_concurrency"),
    }
    if naive_sample:
        if naive_fresh:
            sandbox.control("POST", "graph", "reset")
            sandbox.control("POST", "zammad", "reset")
            sandbox.latency(latency_ms)
        naive = _run_json(["bench.baselines", "naive", str(sandbox.state / "sandbox.json"), str(naive_sample)], env)
        result.update(
            {
                "naive_wall_s": naive["wall_s"],
                "naive_requests": naive["requests_extrapolated"],
                "naive_sampled_users": naive["sampled_users"],
                "naive_extrapolated": naive["extrapolated"],
            }
        )
    return result


def churn(sandbox: SandboxProcess, share: float) -> dict[str, int]:
    """1 % churn through the real Graph write API: new members, changed departments, leavers."""
    info = sandbox.info
    token = app_token(sandbox.session, info, "admin_app")
    headers = {"Authorization": f"Bearer {token}"}
    group = info["groups"]["All Staff"]
    members = sandbox.control("GET", "graph", "state")["groups"][group]
    per_kind = max(1, int(len(members) * share / 3))
    base = f"{info['graph_url']}/v1.0"
    for i in range(per_kind):
        user = sandbox.session.post(
            f"{base}/users",
            headers=headers,
            json={
                "accountEnabled": True,
                "displayName": f"New Hire {i}",
                "mailNickname": f"newhire{i}",
                "userPrincipalName": f"newhire{i}@bench.example",
                "mail": f"newhire{i}@bench.example",
                "givenName": "New",
                "surname": f"Hire{i}",
                "passwordProfile": {"password": "x"},
            },
        ).json()
        sandbox.session.post(
            f"{base}/groups/{group}/members/$ref",
            headers=headers,
            json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user['id']}"},
        )
    for user_id in members[:per_kind]:
        sandbox.session.patch(f"{base}/users/{user_id}", headers=headers, json={"department": "Changed"})
    for user_id in members[per_kind : 2 * per_kind]:
        sandbox.session.delete(f"{base}/groups/{group}/members/{user_id}/$ref", headers=headers)
    return {"new": per_kind, "changed": per_kind, "left": per_kind}


def scaled(n: int) -> int:
    return max(100, int(n * SCALE))


FEED_SCENARIOS = ("incremental_100k", "idle_tick_100k", "sensor_latency")  # bench/feed.py makes these
SCENARIOS = (
    "nochange_10k",
    "initial_10k",
    "nochange_100k",
    *FEED_SCENARIOS,
    "churn_100k",
    "throttled_2k",
)


def run_all(only: set[str] | None = None) -> dict[str, Any]:
    """Every scenario, or those in ``only`` (each sandbox is started only when one of its scenarios runs)."""
    OUT.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, Any] = {}
    n10, n100 = scaled(10_000), scaled(100_000)
    wanted = set(SCENARIOS) if only is None else only

    if "nochange_10k" in wanted:
        small = SandboxProcess(f"bench:{n10}:1", "nochange_10k")
        try:
            scenarios["nochange_10k"] = measure(small, 8, 5, n10, naive_sample=min(n10, 1000))
        finally:
            small.stop()

    if "initial_10k" in wanted:
        initial = SandboxProcess(f"bench:{n10}:0", "initial_10k")
        try:
            scenarios["initial_10k"] = measure(initial, 8, 20, n10, naive_sample=min(n10, 300), naive_fresh=True)
        finally:
            initial.stop()

    if wanted & {"nochange_100k", "churn_100k", *FEED_SCENARIOS}:
        big = SandboxProcess(f"bench:{n100}:1", "nochange_100k")
        try:
            if wanted & {"nochange_100k", *FEED_SCENARIOS}:  # the feed's baseline is a synced tenant
                scenarios["nochange_100k"] = measure(big, 8, 5, n100, naive_sample=min(n100, 500))
            if wanted & set(FEED_SCENARIOS):
                scenarios.update(feed.scenarios(big, write_config(big, 8), bench_env(big), 5))
            if "churn_100k" in wanted:
                changes = churn(big, 0.01)
                scenarios["churn_100k"] = measure(big, 8, 5, n100, naive_sample=None)
                scenarios["churn_100k"]["churn"] = changes
        finally:
            big.stop()

    if "throttled_2k" not in wanted:
        return scenarios
    throttled = SandboxProcess(f"bench:{scaled(2000)}:0", "throttled_2k")
    try:
        rule = [
            {
                "route": "POST /api/v1/users",
                "rate": 0.15,
                "statuses": [429],
                "retry_after": 0.3,
                "punish_early_retry": True,
            }
        ]
        scenarios["throttled_2k"] = measure(throttled, 8, 5, scaled(2000), naive_sample=None, extra_faults=rule)
    finally:
        throttled.stop()
    return scenarios


def targets(s: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows = []
    nc100 = s["nochange_100k"]
    n = nc100["users"]
    limit = math.ceil(n / 999) + math.ceil(n / 1000) + 5
    rows.append((f"no-change {n}: requests ≤ {limit}", str(nc100["requests_total"]), nc100["requests_total"] <= limit))
    ratio = nc100["wall_s"] / nc100["floor_wall_s"]
    rows.append(("no-change 100k: wall ≤ 2× floor", f"{ratio:.2f}×", ratio <= 2))
    core = nc100["stages"]["normalize"] + nc100["stages"]["plan"]
    rows.append(("no-change 100k: normalize + match + plan ≤ 1 s", f"{core:.2f} s", core <= 1.0))
    rows.append(("no-change 100k: peak RSS ≤ 400 MB", f"{nc100['peak_rss_mb']:.0f} MB", nc100["peak_rss_mb"] <= 400))
    init = s["initial_10k"]
    ideal = init["workers"] / (init["latency_ms"] / 1000)
    throughput = init["counts"]["created"] / init["stages"]["apply"]
    rows.append(
        (
            f"initial {init['users']}: throughput ≥ 80 % of {ideal:.0f}/s",
            f"{throughput:.0f}/s ({throughput / ideal:.0%})",
            throughput >= 0.8 * ideal,
        )
    )
    speedup = init["naive_wall_s"] / init["wall_s"]
    rows.append(("initial 10k: ≥ 12× faster than naive", f"{speedup:.1f}×", speedup >= 12))
    nc10 = s["nochange_10k"]
    fewer = nc10["naive_requests"] / nc10["requests_total"]
    rows.append(("no-change 10k: ≥ 50× fewer requests than naive", f"{fewer:.0f}×", fewer >= 50))
    growth = nc100["wall_s"] / nc10["wall_s"]
    floor_growth = nc100["floor_wall_s"] / nc10["floor_wall_s"]  # what the I/O alone grows by
    rows.append(
        (
            f"10k → 100k no-change wall ratio ≤ 1.1 × the floor's ({floor_growth:.1f})",
            f"{growth:.1f}",
            growth <= 1.1 * floor_growth,
        )
    )
    inc = s.get("incremental_100k")
    if inc:
        rows.append(
            (
                f"incremental {inc['users']}: 10 changes, requests ≤ 40",
                f"{inc['requests_total']} (feed found {inc['feed_found']} of 10)",
                inc["requests_total"] <= 40 and inc["feed_found"] == 10,
            )
        )
        rows.append((f"incremental {inc['users']}: wall ≤ 2 s", f"{inc['wall_s']:.2f} s", inc["wall_s"] <= 2))
    idle = s.get("idle_tick_100k")
    if idle:
        rows.append(
            (
                f"idle sensor tick {idle['users']}: requests ≤ 2, none to Zammad",
                f"{idle['requests_total']} ({idle['zammad_requests']} to Zammad)",
                idle["requests_total"] <= 2 and idle["zammad_requests"] == 0,
            )
        )
    lat = s.get("sensor_latency")
    if lat:
        rows.append(
            (
                "sensor latency (daemon): Graph change → Zammad write, median of 3 ≤ 60 s",
                f"{lat['latency_s']:.1f} s ({', '.join(f'{x:.1f}' for x in lat['latencies_s'])})",
                lat["latency_s"] <= 60,
            )
        )
    thr = s["throttled_2k"]
    rows.append(
        (
            "throttled creates: no retry before Retry-After",
            f"{thr['early_retries']} early, {thr['throttled']} × 429, concurrency down to {thr['min_concurrency']}",
            thr["early_retries"] == 0,
        )
    )
    return rows


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_reports(scenarios: dict[str, Any]) -> None:
    machine = (
        f"{platform.node() or 'host'}: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    results = {
        "machine": machine,
        "commit": commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scale": SCALE,
        "scenarios": scenarios,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    render_markdown(results)


FEED_SCENARIOS = ("incremental_100k", "idle_tick_100k", "sensor_latency")


def feed_section(scenarios: dict[str, Any]) -> list[str]:
    """The change-feed scenarios: what each measures and what bounds it."""
    if not any(n in scenarios for n in FEED_SCENARIOS):
        return []
    lines = [
        "",
        "## Change feed",
        "",
        "Run on the 100,000-user tenant after `nochange_100k` (whose full run recorded the profile's links).",
        "",
        "- **incremental_100k**: 2 users removed from the group, 1 disabled, 3 departments changed and 4 new "
        "hires through Graph's write API; one feed step (`feed.advance`, as the sensor takes it) finds them, "
        "then the targeted run for them is measured like `sync_once` (bench/feed.py). Requests are bounded by "
        "the change: one `$batch` for the users and their memberships, a Zammad read per user (by the id the "
        "links know, or a search for a new hire), a write per change, plus the token and the role list. The "
        "wall time is bounded by Dagster's own work per run (about 60 events written to the instance, the "
        "IO manager's files), not by the sync: the stages show it.",
        "- **idle_tick_100k**: a sensor tick when nothing changed, measured after a first tick in the same "
        "process (a sensor's process keeps its token): one users-delta and one groups-delta request.",
        "- **sensor_latency**: `dagster-daemon` runs the sensor every 30 s; a user is disabled through Graph "
        "and the time until the Zammad user is inactive is taken, three times. Bounded by the sensor interval "
        "(a change waits up to 30 s for the next tick) plus the daemon launching the run in a new process.",
        "",
        "| scenario | users | latency | wall s | requests | stages (s) / latencies |",
        "|---|---|---|---|---|---|",
    ]
    for name in FEED_SCENARIOS:
        s = scenarios.get(name)
        if s is None:
            continue
        detail = ", ".join(f"{k} {v}" for k, v in s.get("stages", {}).items())
        if name == "sensor_latency":
            detail = "latencies " + ", ".join(f"{x:.1f} s" for x in s["latencies_s"])
            wall = f"{s['latency_s']:.1f} (median)"
        else:
            wall = f"{s['wall_s']:.2f}"
        requests_total = str(s.get("requests_total", ""))
        lines.append(f"| {name} | {s['users']} | {s['latency_ms']} ms | {wall} | {requests_total} | {detail} |")
    return lines


def render_markdown(results: dict[str, Any]) -> None:
    """BENCHMARKS.md from bench/results.json (``python -c 'import bench.run as r; r.rerender()'``)."""
    machine, scenarios = results["machine"], results["scenarios"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine}. Date: {results['date']}. Commit: `{results['commit']}`. Scale: {results['scale']}.",
        "Produced by `make bench` (bench/run.py); raw numbers in bench/results.json. Latency is added by the "
        "sandbox to every request; the floor downloads every Graph and Zammad page and does nothing else; the "
        "naive baseline searches and writes once per user, sequentially (sampled and extrapolated where the "
        "table says so).",
        "",
        "entrasync's numbers come from the path every sync takes: `entrasync_sync_job` executed in process on a "
        "Dagster instance, exactly as `entrasync sync` runs it (bench/sync_once.py). Stage times are the job's "
        "step durations, so they include Dagster's share: each step's table is written by the IO manager at the "
        "fs IO manager's path (so the UI can re-execute any step; in process the next step gets it without "
        "reading it back), the raw snapshots pass their pandera type checks, the normalized users and the plan "
        "their blocking checks, and every event is written to the instance. `python -m bench.stages CONFIG` "
        "repeats the normalize and plan steps alone; `python -m bench.run --only SCENARIO` runs one scenario.",
        "",
        "| scenario | users | latency | workers | wall s | floor s | × floor | naive s | × faster | requests | naive requests | peak RSS MB | stages (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in scenarios.items():
        if name in FEED_SCENARIOS:
            continue
        naive = s.get("naive_wall_s")
        naive_text = (
            "" if naive is None else f"{naive:.1f}" + (" (extrapolated)" if s.get("naive_extrapolated") else "")
        )
        faster = "" if naive is None else f"{naive / s['wall_s']:.1f}"
        stages = ", ".join(f"{k} {v}" for k, v in s["stages"].items())
        cells = [
            name,
            str(s["users"]),
            f"{s['latency_ms']} ms",
            str(s["workers"]),
            f"{s['wall_s']:.2f}",
            f"{s['floor_wall_s']:.2f}",
            f"{s['wall_s'] / s['floor_wall_s']:.2f}",
            naive_text,
            faster,
            str(s["requests_total"]),
            str(s.get("naive_requests", "")),
            f"{s['peak_rss_mb']:.0f}",
            stages,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += feed_section(scenarios)
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets(scenarios)]
    lines += ["", "## Requests per route (no-change 100k)", "", "| route | requests |", "|---|---|"]
    lines += [f"| `{r}` | {c} |" for r, c in sorted(scenarios["nochange_100k"]["requests"].items())]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")


def rerender() -> None:
    render_markdown(json.loads((ROOT / "bench" / "results.json").read_text()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="make bench: the scenarios of BENCHMARKS.md")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable); the results are printed and written to bench/out/, "
        "not to bench/results.json or BENCHMARKS.md, which only a full run replaces",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.only:
        scenarios = run_all(set(args.only))
        (OUT / "results-only.json").write_text(json.dumps(scenarios, indent=2) + "\n")
        print(json.dumps(scenarios, indent=2))
    else:
        write_reports(run_all())
        print((ROOT / "BENCHMARKS.md").read_text())
    print(f"bench finished in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
