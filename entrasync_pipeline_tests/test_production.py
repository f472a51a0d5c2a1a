"""The production shape for real: dagster-webserver and dagster-daemon as separate processes, run,
event-log and schedule storage in the machine's PostgreSQL, the job launched through GraphQL
against the sandbox; then the UI in headless Chromium (screenshots under docs/images/).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy as sa
import yaml

from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config
from entrasync_pipeline_tests.test_audit import PG_ADMIN_URL, _postgres_available

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCATION = "entrasync"
SCREENSHOTS = REPO / "docs" / "images"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (.ci/run provides it)")
        pytest.skip(why)


@pytest.fixture
def pg_url() -> Iterator[str]:
    _require(_postgres_available(), f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"entrasync_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"  # psycopg2: SQLAlchemy 2.1 defaults to psycopg 3
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


class Deployment:
    """dagster-webserver + dagster-daemon, each in its own process group."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.env = env
        self.logs = {n: open(home / f"{n}.log", "wb") for n in ("webserver", "daemon")}  # noqa: SIM115
        bin_dir = Path(sys.executable).parent
        self.procs = [
            subprocess.Popen(
                [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port), "-w", "workspace.yaml"],
                cwd=REPO,
                env=env,
                stdout=self.logs["webserver"],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            subprocess.Popen(
                [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                cwd=REPO,
                env=env,
                stdout=self.logs["daemon"],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        ]
        self.home = home
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError((home / "webserver.log").read_text()[-3000:])
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in self.logs.values():
            log.close()


REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}


@pytest.fixture
def deployment(sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, pg_url: str) -> Iterator[Deployment]:
    home = Path(environ["DAGSTER_HOME"])
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    instance["storage"] = {"postgres": {"postgres_url": pg_url}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, audit={"url": pg_url})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTRA", "ZAMMAD"))},
        **environ,
        "ENTRASYNC_CONFIG": str(config),
    }
    setup = subprocess.run(
        [sys.executable, "-m", "entrasync_pipeline.cli", "zammad-setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    running = Deployment(home, env)
    yield running
    running.stop()


def _wait_for_run(deployment: Deployment, run_id: str, timeout: float = 240) -> str:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = deployment.graphql(query, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish: {(deployment.home / 'daemon.log').read_text()[-2000:]}")


def test_webserver_and_daemon_on_postgres_run_the_sync(
    deployment: Deployment, sandbox: Sandbox, tmp_path: Path
) -> None:
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=deployment.port)
    run_id = client.submit_job_execution(
        "entrasync_sync_job", repository_location_name=LOCATION, tags={"dagster/partition": "sandbox"}
    )
    assert _wait_for_run(deployment, run_id) == "SUCCESS"

    events = deployment.graphql(
        """query($id: ID!) { runOrError(runId: $id) { ... on Run {
        assetMaterializations { assetKey { path } metadataEntries { label ... on IntMetadataEntry { intValue } } }
        assetCheckEvaluations: stepStats { stepKey status } } } }""",
        {"id": run_id},
    )["runOrError"]
    materialized = {m["assetKey"]["path"][0]: m for m in events["assetMaterializations"]}
    assert set(materialized) == {"entra_group_members", "universal_users", "zammad_users", "sync_plan", "zammad_sync"}
    counts = {e["label"]: e.get("intValue") for e in materialized["zammad_sync"]["metadataEntries"]}
    assert counts["created"] == 54 and counts["updated"] == 1 and counts["failed"] == 0
    assert {s["status"] for s in events["assetCheckEvaluations"]} == {"SUCCESS"}

    checks = deployment.graphql("""query { assetNodes(assetKeys: [{path: ["sync_plan"]}, {path: ["universal_users"]}]) {
        assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name blocking
        executionForLatestMaterialization { evaluation { success } } } } } } }""")["assetNodes"]
    evaluated = {
        c["name"]: (c["blocking"], c["executionForLatestMaterialization"]["evaluation"]["success"])
        for node in checks
        for c in node["assetChecksOrError"]["checks"]
    }
    assert evaluated == {
        "sync_plan_schema": (True, True),
        "sync_plan_safety": (True, True),
        "sync_plan_fields": (True, True),
        "sync_plan_groups": (True, True),
        "universal_users_schema": (True, True),
    }

    from entrasync_pipeline.audit import AuditFilter, AuditStore
    from entrasync_pipeline.settings import load_settings

    audit = AuditStore(load_settings(deployment.env["ENTRASYNC_CONFIG"]).audit_url())
    rows = audit.query(AuditFilter(run_id=run_id))
    audit.close()
    assert len([r for r in rows if r["outcome"] == "done"]) == 55 and audit.engine.dialect.name == "postgresql"

    automation = deployment.graphql(
        """query($r: RepositorySelector!) {
        schedulesOrError(repositorySelector: $r) { ... on Schedules { results { name cronSchedule } } }
        sensorsOrError(repositorySelector: $r) { ... on Sensors { results { name sensorState { status } } } } }""",
        {"r": REPO_SELECTOR},
    )
    assert [s["name"] for s in automation["schedulesOrError"]["results"]] == ["entrasync_daily_sync"]
    sensors = {s["name"]: s["sensorState"]["status"] for s in automation["sensorsOrError"]["results"]}
    assert sensors["entrasync_membership_delta"] == "STOPPED"
    started = deployment.graphql(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
        ... on Sensor { sensorState { status } } } }""",
        {"s": {**REPO_SELECTOR, "sensorName": "entrasync_membership_delta"}},
    )
    assert started["startSensor"]["sensorState"]["status"] == "RUNNING"

    _browse(deployment, run_id, tmp_path)


def _dismiss_welcome(page: Any) -> None:
    """A fresh instance greets the first visitor with a community dialog; skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # no dialog this time
        pass


def _open_browser(pw: Any) -> tuple[Any, Any]:
    """Debian's Chromium, headless, with nothing that would reach beyond loopback."""
    browser = pw.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    return browser, browser.new_page(viewport={"width": 1600, "height": 1000})


def _browse(deployment: Deployment, run_id: str, tmp_path: Path) -> None:
    """The UI in a real browser: lineage with the five assets and their checks, the run, the counts."""
    _require(CHROMIUM is not None, "Debian's chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright (Python) is not installed")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser, page = _open_browser(pw)
        page.goto(f"{deployment.url}/asset-groups/entrasync", wait_until="networkidle")
        _dismiss_welcome(page)
        for name in ("entra_group_members", "universal_users", "zammad_users", "sync_plan", "zammad_sync"):
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "lineage.png"))
        page.goto(f"{deployment.url}/runs/{run_id}", wait_until="networkidle")
        page.get_by_text("Success", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "run.png"))
        page.goto(f"{deployment.url}/assets/zammad_sync", wait_until="networkidle")
        page.get_by_text("created", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "zammad_sync.png"))
        page.goto(f"{deployment.url}/assets/sync_plan?view=checks", wait_until="networkidle")
        page.get_by_text("sync_plan_safety", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "checks.png"))
        browser.close()
    for shot in shots.iterdir():
        assert shot.stat().st_size > 10_000
    if os.environ.get("ENTRASYNC_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, SCREENSHOTS / shot.name)


def _cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrasync_pipeline.cli", *args],
        env=deployment.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _audit_of(deployment: Deployment, run_id: str) -> list[tuple[Any, ...]]:
    """The run's audit rows without what differs by nature between two runs (ids, times)."""
    from entrasync_pipeline.audit import AuditFilter, AuditStore
    from entrasync_pipeline.settings import load_settings

    audit = AuditStore(load_settings(deployment.env["ENTRASYNC_CONFIG"]).audit_url())
    rows = audit.query(AuditFilter(run_id=run_id))
    audit.close()
    return sorted(
        (
            r["action"],
            r["outcome"],
            r["dry_run"],
            r["entra_key"] or "",
            r["email"] or "",
            json.dumps(r["changes"], sort_keys=True),
            r["reason"] or "",
        )
        for r in rows
    )


def test_the_cli_and_the_daemon_run_the_same_sync(deployment: Deployment, sandbox: Sandbox, webhook: Any) -> None:
    """One path: the same request through the CLI and through a daemon-launched run gives the same
    plan, audit rows, status and notification; and a CLI sync waits for the daemon's run of the
    same profile instead of writing beside it."""
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from entrasync_pipeline.runs import outcome_of_run

    config = Path(deployment.env["ENTRASYNC_CONFIG"])
    settings = yaml.safe_load(config.read_text())
    settings["profiles"]["sandbox"]["notifications"] = {"urls": [webhook.url]}
    config.write_text(yaml.safe_dump(settings))

    cli = _cli(deployment, "plan", "--json")
    assert cli.returncode == 0, cli.stderr[-2000:]
    by_cli = json.loads(cli.stdout)
    client = DagsterGraphQLClient("127.0.0.1", port_number=deployment.port)
    daemon_run = client.submit_job_execution(
        "entrasync_sync_job",
        repository_location_name=LOCATION,
        run_config={"resources": {"run_options": {"config": {"dry_run": True}}}},
        tags={"dagster/partition": "sandbox"},
    )
    assert _wait_for_run(deployment, daemon_run) == "SUCCESS"
    os.environ["DAGSTER_HOME"], saved = deployment.env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            by_daemon = outcome_of_run(instance, daemon_run).summary()
            assert instance.get_run_by_id(daemon_run).tags["entrasync/trigger"] == "ui"
            assert instance.get_run_by_id(by_cli["run_id"]).tags["entrasync/trigger"] == "cli"
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.__setitem__("DAGSTER_HOME", saved)
    ignored = ("run_id", "trigger", "changes", "plan")  # changes: the daemon's plan is not loaded here
    assert {k: v for k, v in by_cli.items() if k not in ignored} == {
        k: v for k, v in by_daemon.items() if k not in ignored
    }
    assert by_cli["status"] == "ok" and by_cli["dry_run"] is True and by_cli["created"] == 54
    assert _audit_of(deployment, by_cli["run_id"]) == _audit_of(deployment, daemon_run)
    titles = [m["title"] for m in webhook.received]
    bodies = [m["message"].split("\nRun: ")[0] for m in webhook.received]
    assert len(titles) == 2 and titles[0] == titles[1] and bodies[0] == bodies[1]

    # A daemon run holds the profile; a CLI sync started meanwhile waits for it, then finds nothing to do.
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "latency_ms": [2500, 2500]})  # ~20 s of writes
    writing = client.submit_job_execution(
        "entrasync_sync_job", repository_location_name=LOCATION, tags={"dagster/partition": "sandbox"}
    )
    deadline = time.monotonic() + 180
    while sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    waited = _cli(deployment, "sync", "--json")
    assert _wait_for_run(deployment, writing) == "SUCCESS"
    assert waited.returncode == 0, waited.stderr[-2000:]
    assert f"is being synced by run {writing}" in waited.stderr
    assert json.loads(waited.stdout)["created"] == 0
    assert sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) == 54
    sandbox.faults("zammad")

    # Six leavers are more than 10 % of the managed users: blocked the same way on both paths.
    _remove_members(sandbox, 6)
    blocked_cli = _cli(deployment, "sync", "--json")
    assert blocked_cli.returncode == 2, blocked_cli.stderr[-2000:]
    blocked = json.loads(blocked_cli.stdout)
    assert blocked["status"] == "blocked" and blocked["approve_with"].endswith("--approve-deactivations 6")
    assert [c["action"] for c in blocked["changes"]][:6] == ["deactivate"] * 6  # deactivations first
    held = client.submit_job_execution(
        "entrasync_sync_job", repository_location_name=LOCATION, tags={"dagster/partition": "sandbox"}
    )
    assert _wait_for_run(deployment, held) == "FAILURE"
    os.environ["DAGSTER_HOME"] = deployment.env["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            by_daemon = outcome_of_run(instance, held).summary()
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.__setitem__("DAGSTER_HOME", saved)
    assert {k: by_daemon[k] for k in ("status", "blocked_reason", "approve_with", "deactivated")} == {
        k: blocked[k] for k in ("status", "blocked_reason", "approve_with", "deactivated")
    }
    _screenshot(deployment, "/assets/sync_plan?view=checks", "To approve", "blocked.png")


def _remove_members(sandbox: Sandbox, count: int) -> None:
    with sandbox.session() as http:
        token = sandbox.admin_token()
        group = sandbox.info["groups"]["Sales"]
        objects = sandbox.state("graph")["objects"]
        users = [m for m in sandbox.state("graph")["groups"][group] if objects[m]["@odata.type"].endswith("user")]
        for member in users[:count]:
            http.delete(
                f"{sandbox.info['graph_url']}/v1.0/groups/{group}/members/{member}/$ref",
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()


def _screenshot(deployment: Deployment, path: str, text: str, name: str) -> None:
    """One page of the UI in Chromium, kept under docs/images when ENTRASYNC_UPDATE_SCREENSHOTS is set."""
    _require(CHROMIUM is not None, "Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser, page = _open_browser(pw)
        page.goto(f"{deployment.url}{path}", wait_until="networkidle")
        _dismiss_welcome(page)
        page.get_by_text("sync_plan_safety", exact=True).first.click(timeout=60_000)
        shot = deployment.home / name
        try:
            page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(shot))
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("ENTRASYNC_UPDATE_SCREENSHOTS"):
        shutil.copy(shot, SCREENSHOTS / name)


def _wait_for(what: str, condition: Any, deployment: Deployment, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {(deployment.home / 'daemon.log').read_text()[-3000:]}")
        time.sleep(1)


def _freshness_check_status(home: Path) -> str | None:
    import dagster as dg

    key = dg.AssetCheckKey(dg.AssetKey("zammad_sync"), "fresh_full_sync_sandbox")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    return latest.status.value if latest else None


def test_the_daemon_announces_a_stale_profile_once_even_across_a_restart(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, pg_url: str, webhook: Any, heartbeat: Any
) -> None:
    """The health sensor in a real dagster-daemon: the freshness check turns red after max_age_h, one
    message; a restarted daemon says nothing again; a full sync turns it green with one message.
    ``entrasync status`` reads the same instance (including the change feed's cursor)."""
    home = Path(environ["DAGSTER_HOME"])
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    instance["storage"] = {"postgres": {"postgres_url": pg_url}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    groups = [{"id": g, "name": n} for n, g in sandbox.info["groups"].items()]
    notifications = {"urls": [webhook.url], "on_changes": False, "heartbeat_url": heartbeat.url}
    config = write_config(
        tmp_path / "entrasync.yaml",
        sandbox.info,
        {"sandbox": {"groups": groups, "notifications": notifications, "freshness": {"max_age_h": 0.01}}},  # 36 s
        audit={"url": pg_url},
        schedule={"health_interval_s": 10, "sensor_interval_s": 10},
        tls={"ca_bundle": str(heartbeat.ca_bundle)},
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTRA", "ZAMMAD"))},
        **environ,
        "ENTRASYNC_CONFIG": str(config),
    }
    probe_shell = {"PATH": os.environ["PATH"], "ENTRASYNC_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    deployment = Deployment(home, env)
    try:
        # The first tick watches the profile from now: never synced, but not stale yet.
        _wait_for("the first health tick", lambda: _freshness_check_status(home) == "SUCCEEDED", deployment)
        assert _cli(deployment, "zammad-setup").returncode == 0
        synced = _cli(deployment, "sync")
        assert synced.returncode == 0, synced.stderr[-2000:]
        assert len(heartbeat.paths) == 1
        deployment.graphql(
            """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { ... on Sensor { id } } }""",
            {"s": {**REPO_SELECTOR, "sensorName": "entrasync_membership_delta"}},
        )
        _wait_for("the check turns red", lambda: _freshness_check_status(home) == "FAILED", deployment)
        _wait_for("the stale message", lambda: len(webhook.received) == 1, deployment, timeout=30)
        assert webhook.received[0]["title"] == "entrasync sandbox: no successful full sync for more than 0.01 h"
        status = subprocess.run(
            [sys.executable, "-m", "entrasync_pipeline.cli", "status", "--json"],
            env=probe_shell,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 1, status.stderr[-2000:]
        seen = json.loads(status.stdout)
        assert seen["verdict"] == "stale" and seen["feed"]["sensor"] == "running" and seen["feed"]["position"]
    finally:
        deployment.stop()

    deployment = Deployment(home, env)  # a new daemon process reads the stored cursor
    try:
        time.sleep(35)  # three ticks of the health sensor
        assert len(webhook.received) == 1
        assert _cli(deployment, "sync").returncode == 0
        _wait_for("the recovered message", lambda: len(webhook.received) == 2, deployment, timeout=30)
        assert webhook.received[1]["title"] == "entrasync sandbox: syncing again"
        assert _freshness_check_status(home) == "SUCCEEDED"
        assert len(heartbeat.paths) == 2
    finally:
        deployment.stop()
