"""``entrasync status`` as a monitoring probe runs it: a fresh shell with only ENTRASYNC_CONFIG and
DAGSTER_HOME, a real Dagster instance, the sandbox.

Each verdict with its exit code: ``stale`` (no successful full run, or too old), ``failing`` (the
latest run failed, or ``--probe`` found a service that does not answer), ``blocked`` (a plan waits
for approval, with how to approve it), ``ok`` (exit 0). Status only reads: it never calls Graph or
Zammad unless ``--probe`` is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from entrasync_pipeline.runtime import ProfileRuntime
from entrasync_pipeline.settings import load_settings
from entrasync_pipeline_tests.conftest import Sandbox
from entrasync_pipeline_tests.factories import write_config
from entrasync_pipeline_tests.tenant import Admin, it_support_config

REPO = Path(__file__).resolve().parents[1]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entrasync_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        timeout=180,
        cwd=REPO,
    )


def _status(shell: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = _run(shell, "status", "--json", *args)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def shells(sandbox: Sandbox, tmp_path: Path, environ: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the admin's shell with the secrets, a monitoring probe's fresh shell without them)."""
    config = it_support_config(sandbox, tmp_path)
    admin = {**environ, "ENTRASYNC_CONFIG": str(config)}
    return admin, {"ENTRASYNC_CONFIG": str(config), "DAGSTER_HOME": environ["DAGSTER_HOME"]}


def test_each_verdict_and_its_exit_code(
    sandbox: Sandbox, http: Any, tmp_path: Path, shells: tuple[dict[str, str], dict[str, str]]
) -> None:
    admin, probe_shell = shells
    code, never = _status(probe_shell)
    assert (code, never["verdict"], never["reasons"]) == (1, "stale", ["no successful full run yet"])

    assert _run(admin, "sync").returncode == 1  # zammad-setup never ran
    code, failing = _status(probe_shell)
    assert (code, failing["verdict"]) == (1, "failing")
    assert "zammad-setup" in failing["last_failure"]["error"] and failing["last_full_success"] is None

    assert _run(admin, "zammad-setup").returncode == 0
    assert _run(admin, "sync").returncode == 0
    assert _run(admin, "plan").returncode == 0  # a person's dry run: not what health looks at
    code, ok = _status(probe_shell)
    assert (code, ok["verdict"], ok["reasons"]) == (0, "ok", [])
    assert ok["last_full_success"]["trigger"] == "cli" and ok["last_full_success"]["scope"] == "full"
    assert ok["last_failure"]["status"] == "failed" and ok["blocked"] is None and ok["current_run"] is None
    assert ok["audit_store"].startswith("sqlite:///") and ok["max_age_h"] == 26
    table = _run(probe_shell, "status")
    assert table.returncode == 0 and "entrasync sandbox: ok" in table.stdout
    assert "last full sync (success)" in table.stdout and "audit store" in table.stdout

    strict = write_config(
        tmp_path / "strict.yaml",
        sandbox.info,
        {"sandbox": {"groups": [{"id": sandbox.info["groups"]["IT Support"]}], "freshness": {"max_age_h": 0.0001}}},
    )
    code, stale = _status({**probe_shell, "ENTRASYNC_CONFIG": str(strict)})
    assert (code, stale["verdict"]) == (1, "stale") and "limit 0.0001 h" in stale["reasons"][0]

    admin_app, group = Admin(sandbox, http), sandbox.info["groups"]["IT Support"]
    objects = sandbox.state("graph")["objects"]
    for user_id in [m for m in admin_app.members(group) if objects[m]["@odata.type"].endswith("user")][:6]:
        admin_app.remove(group, user_id)
    assert _run(admin, "sync").returncode == 2
    code, blocked = _status(probe_shell)
    assert (code, blocked["verdict"]) == (1, "blocked")
    assert blocked["blocked"]["deactivations"] == 6
    assert blocked["blocked"]["approve_with"] == "entrasync sync --profile sandbox --approve-deactivations 6"
    table = _run(probe_shell, "status")
    assert table.returncode == 1 and "--approve-deactivations 6" in table.stdout


def test_the_run_holding_the_profile_and_the_probe(
    sandbox: Sandbox, environ: dict[str, str], shells: tuple[dict[str, str], dict[str, str]]
) -> None:
    admin, probe_shell = shells
    assert _run(admin, "zammad-setup").returncode == 0 and _run(admin, "sync").returncode == 0
    before = sandbox.stats("zammad")["requests"], sandbox.stats("graph")["requests"]
    with ProfileRuntime("sandbox", load_settings(admin["ENTRASYNC_CONFIG"]), environ) as runtime:
        lease = runtime.lease("run-held-by-another-host")
        lease.acquire()
        try:
            code, held = _status(probe_shell)
        finally:
            lease.release()
    assert code == 0 and held["current_run"]["run_id"] == "run-held-by-another-host"
    assert (sandbox.stats("zammad")["requests"], sandbox.stats("graph")["requests"]) == before  # status only reads

    code, probed = _status(admin, "--probe")
    assert (code, probed["probe"]) == (0, {"graph": "ok: 1 group(s) readable", "zammad": "ok: 3 roles readable"})
    code, refused = _status({**admin, "ZAMMAD_TOKEN": "not-a-valid-token"}, "--probe")
    assert (code, refused["verdict"]) == (1, "failing") and refused["probe"]["zammad"].startswith("failed: ")
    assert "not-a-valid-token" not in json.dumps(refused)


def test_without_dagster_home_status_says_what_to_set(shells: tuple[dict[str, str], dict[str, str]]) -> None:
    _, probe_shell = shells
    result = _run({"ENTRASYNC_CONFIG": probe_shell["ENTRASYNC_CONFIG"]}, "status")
    assert result.returncode == 1 and "set DAGSTER_HOME" in result.stderr


def test_values_a_typed_field_left_out_show_in_status(
    sandbox: Sandbox, tmp_path: Path, environ: dict[str, str]
) -> None:
    """Found by trying it as an admin: values that do not convert were only in the run's log and
    metadata; status names them per field (the seed's employeeIds are "E1000", no whole numbers)."""
    mapping = {
        "email": {"from": ["mail", "otherMails", "userPrincipalName"], "transforms": ["first", "strip", "lower"]},
        "firstname": {"from": ["givenName"]},
        "lastname": {"from": ["surname"]},
        "employee_number": {"from": ["employeeId"], "type": "integer"},
    }
    config = it_support_config(sandbox, tmp_path, mapping=mapping)
    admin = {**environ, "ENTRASYNC_CONFIG": str(config)}
    probe_shell = {"ENTRASYNC_CONFIG": str(config), "DAGSTER_HOME": environ["DAGSTER_HOME"]}
    _, before = _status(probe_shell)
    assert before["invalid_values"] is None
    assert _run(admin, "zammad-setup").returncode == 0 and _run(admin, "sync").returncode == 0
    _, found = _status(probe_shell)
    invalid = found["invalid_values"]
    assert invalid["count"] > 0 and set(invalid["by_field"]) == {"employee_number"}
    assert invalid["by_field"]["employee_number"]["count"] == invalid["count"]
    assert "is not a whole number" in invalid["by_field"]["employee_number"]["example"]
    table = _run(probe_shell, "status")
    assert f"{invalid['count']} left out: employee_number {invalid['count']}" in table.stdout


def test_an_unknown_profile_is_a_usage_error(shells: tuple[dict[str, str], dict[str, str]]) -> None:
    admin, probe_shell = shells
    for shell, command in ((probe_shell, "status"), (admin, "plan"), (admin, "zammad-setup")):
        result = _run(shell, command, "--profile", "nope")
        assert result.returncode == 64 and "unknown profile 'nope'" in result.stderr, (command, result.stderr)


def test_a_dagster_home_that_is_not_there_gets_advice_that_works(
    shells: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    """ "or unset it" led to the next error (status and the audit store need DAGSTER_HOME)."""
    _, probe_shell = shells
    missing = tmp_path / "not-yet"
    result = _run({**probe_shell, "DAGSTER_HOME": str(missing)}, "status")
    assert result.returncode == 1 and f"mkdir -p {missing}" in result.stderr and "unset" not in result.stderr
    missing.mkdir()  # the advice
    _, found = _status({**probe_shell, "DAGSTER_HOME": str(missing)})
    assert found["verdict"] == "stale"
