"""Reliability under the failures identity syncs suffer from (reference/peers-and-pain-points.md §4):
a process killed mid-apply, Dagster re-execution from failure, a 30 % fault rate on every route,
hostile and malformed input, and secrets that must never leak. RELIABILITY.md lists these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
import pytest
import yaml

from entrasync_pipeline.audit import AuditStore
from entrasync_pipeline.settings import load_settings
from entrasync_pipeline_tests.conftest import Sandbox, start_sandbox_process, stop_process
from entrasync_pipeline_tests.factories import write_config
from entrasync_pipeline_tests.test_cli import entrasync

ALL_FAULTS = [
    {"route": "*", "rate": 0.3, "statuses": [429, 500, 502, 503, 504], "retry_after": 0.2, "punish_early_retry": True},
]


def _env(environ: dict[str, str], config: Path) -> dict[str, str]:
    return {**environ, "ENTRASYNC_CONFIG": str(config)}


def _zammad_by_key(sandbox: Sandbox) -> Counter[str]:
    return Counter(u["entra_key"] for u in sandbox.state("zammad")["users"] if u.get("entra_key"))


def _assert_converged(sandbox: Sandbox, env: dict[str, str]) -> None:
    """No duplicates, and a fault-free plan has nothing left to write."""
    keys = _zammad_by_key(sandbox)
    assert keys and max(keys.values()) == 1, keys.most_common(3)
    emails = Counter(u["email"] for u in sandbox.state("zammad")["users"] if u.get("email"))
    assert max(emails.values()) == 1
    sandbox.control("DELETE", "graph", "faults")
    sandbox.control("DELETE", "zammad", "faults")
    plan = json.loads(entrasync("plan", "--json", env=env).stdout)
    assert plan["plan"]["create"] == plan["plan"]["update"] == plan["plan"]["deactivate"] == 0, plan


def _assert_one_final_row_per_attempt(config: Path, environ: dict[str, str]) -> list[dict[str, Any]]:
    store = AuditStore(load_settings(config).audit_url(environ))
    rows = store.query()
    store.close()
    started = Counter(r["attempt_id"] for r in rows if r["outcome"] == "started")
    final = Counter(r["attempt_id"] for r in rows if r["outcome"] != "started" and r["attempt_id"])
    assert started == final and max(final.values()) == 1
    return rows


def test_sigkill_during_the_apply_then_a_fresh_run_converges(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    """The killed run's lease lapses (ttl_s), the next run takes it, records the killed run's
    unfinished writes as interrupted (never its own) and converges."""
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, workers=2, lock={"ttl_s": 6, "wait_s": 60})
    env = _env(environ, config)
    assert entrasync("zammad-setup", env=env).returncode == 0
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "latency_ms": [120, 150]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "entrasync_pipeline.cli", "sync"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while sandbox.stats("zammad")["requests"].get("POST /api/v1/users", 0) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    sandbox.control("DELETE", "zammad", "faults")
    created_before = sum(_zammad_by_key(sandbox).values())
    assert 0 < created_before < 54
    waited = time.monotonic()
    rerun = entrasync("sync", "--json", env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert time.monotonic() - waited < 45  # the lapse (6 s), not the whole wait_s
    _assert_converged(sandbox, env)
    rows = _assert_one_final_row_per_attempt(config, environ)
    interrupted = [r for r in rows if r["outcome"] == "interrupted"]
    assert interrupted, "the killed run's unfinished intents must be recorded as interrupted"
    assert json.loads(rerun.stdout)["run_id"] not in {r["run_id"] for r in interrupted}
    assert not {r["attempt_id"] for r in interrupted} & {r["attempt_id"] for r in rows if r["outcome"] == "done"}


def _reexecutable_job() -> dg.JobDefinition:
    """The job as a code location loads it from $ENTRASYNC_CONFIG (built here, not the module's ``defs``,
    which were built when this process first imported them, maybe under another config)."""
    from entrasync_pipeline.definitions import build_definitions
    from entrasync_pipeline.settings import configured_profile_names, schedule_settings

    return build_definitions(configured_profile_names(), schedule_settings()).resolve_job_def("entrasync_sync_job")


def test_dagster_reexecution_from_failure_converges(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, workers=2)
    env = _env(environ, config)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert entrasync("zammad-setup", env=env).returncode == 0
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 0.7, "statuses": [500]}, seed=4)
    job = dg.reconstructable(_reexecutable_job)
    with dg.instance_for_test() as instance:
        with dg.execute_job(
            job, instance=instance, tags={"dagster/partition": "sandbox"}, raise_on_error=False
        ) as first:
            assert not first.success  # the escrow rule stopped the apply
            run_id = first.run_id
        sandbox.control("DELETE", "zammad", "faults")
        options = dg.ReexecutionOptions.from_failure(run_id, instance)
        with dg.execute_job(
            job,
            instance=instance,
            reexecution_options=options,
            raise_on_error=False,
            tags={"dagster/partition": "sandbox"},
        ) as second:
            assert second.success
            steps = {e.step_key for e in second.all_events if e.event_type_value == "STEP_SUCCESS"}
            assert steps == {"zammad_sync"}  # the stored (older) plan is re-applied, revalidated live
    _assert_converged(sandbox, env)


def test_a_30_percent_fault_rate_on_every_route_converges(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info, workers=4)
    env = _env(environ, config)
    assert entrasync("zammad-setup", env=env).returncode == 0
    for which in ("graph", "zammad"):
        sandbox.faults(which, *ALL_FAULTS, seed=21)
    codes = []
    for _ in range(6):
        result = entrasync("sync", "--json", env=env)
        codes.append(result.returncode)
        if result.returncode == 0:
            break
    assert codes[-1] == 0, codes
    stats = sandbox.stats("graph"), sandbox.stats("zammad")
    assert all(s["faults_injected"] > 0 for s in stats)
    assert all(s["early_retries"] == 0 for s in stats), "a request was retried before Retry-After"
    _assert_converged(sandbox, env)


@pytest.mark.parametrize(
    "fault",
    [
        {"reset": True},
        {"truncate": True},
        {"html": True, "statuses": [502, 504]},
        {"latency_ms": [0, 30], "statuses": [503], "retry_after": "http-date"},
    ],
    ids=["resets", "truncated-json", "proxy-html", "http-date"],
)
def test_each_kind_of_fault_is_survived(
    sandbox: Sandbox, environ: dict[str, str], tmp_path: Path, fault: dict[str, Any]
) -> None:
    config = write_config(tmp_path / "entrasync.yaml", sandbox.info)
    env = _env(environ, config)
    assert entrasync("zammad-setup", env=env).returncode == 0
    rule = {"route": "*", "rate": 0.25, **fault}
    for which in ("graph", "zammad"):
        sandbox.faults(which, rule, seed=8)
    codes = []
    for _ in range(4):
        codes.append(entrasync("sync", env=env).returncode)
        if codes[-1] == 0:
            break
    assert codes[-1] == 0, codes
    _assert_converged(sandbox, env)


# --- hostile input ---------------------------------------------------------------------------------
HOSTILE = {
    "zero-width": {"givenName": "Ze\u200bro", "surname": "Wi\u200ddth"},
    "rtl": {"givenName": "\u202eevil", "surname": "Right\u200fLeft"},
    "emoji": {"givenName": "Émoji 🎉", "surname": "Ünicode 👩‍💻"},
    "html": {"givenName": "<script>alert(1)</script>", "surname": "<b>bold</b>"},
    "sql": {"givenName": "Robert'); DROP TABLE users;--", "surname": "Tables"},
    "formula": {"givenName": '=HYPERLINK("http://evil.example","x")', "surname": "+SUM(1)"},
    "long": {"givenName": "L" * 300, "surname": "M" * 300, "department": "D" * 400, "mobilePhone": "9" * 300},
    "nulls": {"givenName": None, "surname": None, "displayName": None, "businessPhones": [], "department": None},
    "invalid-email": {"mail": "not an email", "userPrincipalName": "also not"},
    "no-email": {"mail": None, "otherMails": [], "userPrincipalName": "x_y.example#EXT#@t.onmicrosoft.com"},
    "duplicate-email-1": {"mail": "twin@contoso.example"},
    "duplicate-email-2": {"mail": "TWIN@contoso.example"},
    "wrong-types": {"accountEnabled": "yes", "businessPhones": "not-a-list"},
}


@pytest.fixture(scope="module")
def hostile_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    from entrasync_pipeline.sandbox.seeds import demo_seed, seed_id

    seed = demo_seed()
    group = next(g for g in seed.groups if g["displayName"] == "Sales")
    for name, overrides in HOSTILE.items():
        alias = name.replace("-", ".")
        user = {
            "id": seed_id("hostile", name),
            "displayName": f"Hostile {name}",
            "givenName": "H",
            "surname": name,
            "mail": f"{alias}@contoso.example",
            "userPrincipalName": f"{alias}@contoso.example",
            "otherMails": [],
            "businessPhones": ["+1 555"],
            "accountEnabled": True,
            **overrides,
        }
        seed.users.append(user)
        group["members"].append(user["id"])
    group["members"].append(seed.users[0]["id"])  # duplicate membership across groups
    seed.zammad_users += [
        {"login": "dup1", "email": "clash@example.org", "firstname": "Dup", "lastname": "One"},
        {"login": "dup2", "email": "other@example.org", "firstname": "Dup", "lastname": "Two", "extra_field": "x"},
    ]
    path = tmp_path_factory.mktemp("hostile") / "seed.yaml"
    data = {k: v for k, v in seed.__dict__.items() if k != "name"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    state = path.parent / "state"
    proc, info = start_sandbox_process(state, seed=str(path))
    yield Sandbox(info, state)
    stop_process(proc)


def test_hostile_input_never_crashes_and_every_bad_record_is_audited(
    hostile_sandbox: Sandbox, tmp_path: Path, webhook: Any
) -> None:
    sandbox = hostile_sandbox
    sandbox.reset()
    home = tmp_path / "home"
    home.mkdir()
    environ = {**sandbox.env(), "DAGSTER_HOME": str(home)}
    groups = [{"id": sandbox.info["groups"]["Sales"], "name": "Sales"}]
    config = write_config(
        tmp_path / "entrasync.yaml",
        sandbox.info,
        {"sandbox": {"groups": groups, "notifications": {"urls": [webhook.url]}}},
    )
    env = _env(environ, config)
    assert entrasync("zammad-setup", env=env).returncode == 0
    result = entrasync("sync", "--json", env=env)
    summary = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary["failed"] == 0
    rows = _assert_one_final_row_per_attempt(config, environ)
    reasons = [r["reason"] or "" for r in rows if r["outcome"] == "skipped"]
    assert any("invalid email" in v for v in reasons)
    assert any("no usable email" in v for v in reasons)
    assert sum("share the email twin@contoso.example" in v for v in reasons) == 2
    users = {u["email"]: u for u in sandbox.state("zammad")["users"]}
    assert users["html@contoso.example"]["firstname"] == "<script>alert(1)</script>"  # stored as data, not run
    assert len(users["long@contoso.example"]["firstname"]) == 100
    assert len(users["long@contoso.example"]["department"]) == 200
    again = json.loads(entrasync("sync", "--json", env=env).stdout)
    assert again["created"] == again["updated"] == 0  # hostile values compare equal on the second run
    exported = entrasync("audit", "--format", "csv", env=env).stdout
    import csv
    import io

    cells = [c for row in csv.reader(io.StringIO(exported)) for c in row]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    body = webhook.received[-1]["message"]
    assert "<script>" not in body and "\n=" not in body


# --- secrets ----------------------------------------------------------------------------------------
def test_secrets_never_appear_in_any_output(
    sandbox: Sandbox,
    environ: dict[str, str],
    tmp_path: Path,
    webhook: Any,
    heartbeat: Any,
    monkeypatch: pytest.MonkeyPatch,
    tinyproxy: Any,
) -> None:
    hook_secret = "hook-password-4711"
    hook_url = webhook.url.replace("json://", f"json://alerts:{hook_secret}@")
    proxy_secret = "proxy-password-0815"
    proxy = tinyproxy([f"BasicAuth entrasync {proxy_secret}"])
    info = sandbox.info
    secret_config = write_config(
        tmp_path / "secret.yaml",
        info,
        {
            "sandbox": {
                "groups": [{"id": g} for g in info["groups"].values()],
                "entra": {
                    "tenant_id": info["tenant_id"],
                    "client_id": info["sync_app"]["client_id"],
                    "credential": "secret",
                    "authority_host": info["graph_url"],
                    "graph_url": info["graph_url"],
                },
                "notifications": {
                    "urls": [hook_url],
                    "heartbeat_url": "${ENTRASYNC_HEARTBEAT_URL}",
                    "heartbeat_fail_suffix": "/fail",
                },
            }
        },
        tls={"ca_bundle": str(heartbeat.ca_bundle)},
        http={"proxy": f"http://entrasync:${{PROXY_PASSWORD}}@127.0.0.1:{proxy.port}", "backoff_base_s": 0.05},
    )
    env = {
        **_env(environ, secret_config),
        "PROXY_PASSWORD": proxy_secret,
        "ENTRASYNC_HEARTBEAT_URL": heartbeat.url,
    }
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(Path(info["federated"]["token_file"]).read_text())
    federated_config = write_config(
        tmp_path / "federated.yaml",
        info,
        {
            "sandbox": {
                "groups": [{"id": g} for g in info["groups"].values()],
                "entra": {
                    "tenant_id": info["tenant_id"],
                    "client_id": info["sync_app"]["client_id"],
                    "credential": "federated",
                    "authority_host": info["graph_url"],
                    "graph_url": info["graph_url"],
                },
            }
        },
    )
    federated_env = {**_env(environ, federated_config), "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    secrets = {
        "client secret": info["sync_app"]["client_secret"],
        "private key": Path(info["sync_app"]["private_key_path"]).read_text().splitlines()[1],
        "zammad token": info["zammad_token"],
        "webhook password": hook_secret,
        "heartbeat token": "5e3c-secret-token",  # the last segment of heartbeat.url
        "proxy password": proxy_secret,
        "key passphrase": info["sync_app"]["private_key_passphrase"],
        "federated assertion": token_file.read_text().split(".")[2],  # its signature part
    }
    outputs = [entrasync("-v", "zammad-setup", env=env)]
    for which in ("graph", "zammad"):
        sandbox.faults(which, {"route": "*", "rate": 0.2, "statuses": [429, 500, 503], "retry_after": 0.1}, seed=5)
    outputs += [
        entrasync("-v", "sync", "--json", env=env),
        entrasync("-v", "sync", env=env),
        entrasync("-v", "plan", "--json", env=env),
        entrasync("-v", "status", "--json", "--probe", env=env),
        entrasync("-v", "plan", "--json", env=federated_env),
    ]
    assert outputs[-1].returncode == 0, outputs[-1].stderr  # the federated credential really got a token
    assert len(proxy.tunnels()) > 10  # the secret profile's requests really went through the proxy
    sandbox.faults("zammad", {"route": "POST /api/v1/users", "rate": 1.0, "statuses": [500]})
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    text += entrasync("audit", "--format", "json", env=env).stdout
    text += json.dumps(webhook.received)
    assert heartbeat.paths  # the runs did ping it, so the URL was in use
    # The certificate profile (its key passphrase-protected) through Dagster: scan the event log too.
    cert_config = write_config(tmp_path / "cert.yaml", info)
    for key, value in _env(environ, cert_config).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENTRA_CLIENT_KEY", info["sync_app"]["encrypted_private_key_path"])
    from entrasync_pipeline.definitions import build_definitions
    from entrasync_pipeline.settings import ScheduleSettings

    defs = build_definitions(["sandbox"], ScheduleSettings(), config_path=str(cert_config))
    with dg.instance_for_test() as instance:
        run = defs.resolve_job_def("entrasync_sync_job").execute_in_process(
            instance=instance, partition_key="sandbox", raise_on_error=False
        )
        text += "\n".join(str(record) for record in instance.all_logs(run.run_id))
    assert "zammad_sync" in text and "created" in text
    leaked = [name for name, value in secrets.items() if value and value in text]
    assert leaked == []
