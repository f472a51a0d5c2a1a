"""``entrasync sandbox serve``: the state file, the env file, the config, clean shutdown."""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from entrasync_pipeline.sandbox.seeds import bench_seed, demo_seed, load_seed
from entrasync_pipeline.sandbox.serve import serve
from entrasync_pipeline.settings import load_settings
from entrasync_pipeline_tests.conftest import Sandbox, start_sandbox_process, stop_process

STATE_KEYS = {
    "tenant_id",
    "authority",
    "graph_url",
    "sync_app",
    "admin_app",
    "groups",
    "zammad_url",
    "zammad_token",
    "ca_bundle",
    "control_key",
    "federated",
}


def test_state_file_has_exactly_the_documented_keys(sandbox: Sandbox) -> None:
    info = json.loads((sandbox.state_dir / "sandbox.json").read_text())
    assert set(info) == STATE_KEYS
    assert set(info["sync_app"]) == {
        "client_id",
        "client_secret",
        "certificate_path",
        "private_key_path",
        "encrypted_private_key_path",
        "private_key_passphrase",
    }
    # DESIGN.md names issuer, subject, audience and token_file; signing_key_path lets tests mint tokens.
    assert set(info["federated"]) == {"issuer", "subject", "audience", "token_file", "signing_key_path"}
    assert info["federated"]["audience"] == "api://AzureADTokenExchange"
    assert Path(info["federated"]["token_file"]).stat().st_mode & 0o077 == 0
    assert set(info["admin_app"]) == {"client_id", "client_secret"}
    assert info["authority"] == f"{info['graph_url']}/{info['tenant_id']}"
    assert info["graph_url"].startswith("https://127.0.0.1:") and info["zammad_url"].startswith("https://127.0.0.1:")
    assert set(info["groups"]) == {"IT Support", "IT Support Tier 2", "Sales"}
    assert Path(info["ca_bundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_env_file_holds_the_secrets_under_the_documented_names(sandbox: Sandbox) -> None:
    env = sandbox.env()
    assert env["ENTRA_CLIENT_SECRET"] == sandbox.info["sync_app"]["client_secret"]
    assert env["ZAMMAD_TOKEN"] == sandbox.info["zammad_token"]
    assert Path(env["ENTRA_CLIENT_CERTIFICATE"]).exists() and Path(env["ENTRA_CLIENT_KEY"]).exists()
    assert env["ENTRA_CLIENT_KEY_PASSPHRASE"] == sandbox.info["sync_app"]["private_key_passphrase"]
    assert env["AZURE_FEDERATED_TOKEN_FILE"] == sandbox.info["federated"]["token_file"]
    assert (sandbox.state_dir / "sandbox.env").stat().st_mode & 0o077 == 0


def test_serve_writes_a_config_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    proc, info = start_sandbox_process(tmp_path / "state", config=config)
    written = yaml.safe_load(config.read_text())
    profile = next(iter(written["profiles"].values()))
    assert {g["id"] for g in profile["groups"]} == set(info["groups"].values())
    assert profile["zammad"]["url"] == info["zammad_url"]
    assert written["tls"]["ca_bundle"] == info["ca_bundle"]
    assert "secret" not in config.read_text().lower().replace("client_secret_env", "")
    assert stop_process(proc, timeout=5) == 0
    assert not (tmp_path / "state" / "sandbox.json").exists()


def test_serve_also_stops_on_sigint(tmp_path: Path) -> None:
    proc, _ = start_sandbox_process(tmp_path / "state")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0


def test_the_written_config_works_as_is_with_its_audit_store_in_the_state_dir(tmp_path: Path) -> None:
    state, config = tmp_path / "state", tmp_path / "config.yaml"
    proc, _ = start_sandbox_process(state, config=config)
    try:
        settings = load_settings(config, environ={})
        assert settings.audit.url == f"sqlite:///{state.resolve() / 'audit.db'}"
        assert Path(settings.tls.ca_bundle or "").is_absolute()
    finally:
        assert stop_process(proc, timeout=5) == 0


def test_serve_in_process_stops_when_the_event_is_set(tmp_path: Path) -> None:
    """In-process callers (off the main thread, so no signal handlers) stop it with ``stop``."""
    stop = threading.Event()
    runner = threading.Thread(target=serve, args=("demo", tmp_path), kwargs={"stop": stop}, daemon=True)
    runner.start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "sandbox.json").exists():
        assert runner.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    stop.set()
    runner.join(10)
    gc.unfreeze()  # serve() froze the heap of this (the test) process
    assert not runner.is_alive() and not (tmp_path / "sandbox.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_during_shutdown_does_not_hang(tmp_path: Path, signum: signal.Signals) -> None:
    """The old handler called Event.set() from a signal handler: a second signal could deadlock."""
    proc, _ = start_sandbox_process(tmp_path / "state")
    try:
        started = time.monotonic()
        proc.send_signal(signum)
        time.sleep(0.02)
        proc.send_signal(signum)
        proc.wait(10)
        assert time.monotonic() - started < 10
        assert not (tmp_path / "state" / "sandbox.json").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_demo_seed_reads_like_a_small_company() -> None:
    seed = demo_seed()
    assert 55 <= len(seed.users) <= 65
    upns = [u["userPrincipalName"] for u in seed.users]
    assert any("#EXT#" in upn for upn in upns)
    assert any(u["mail"] is None and u["otherMails"] for u in seed.users)
    assert any(u["accountEnabled"] is False for u in seed.users)
    assert any(u["mail"] and u["mail"] != u["mail"].lower() for u in seed.users)
    assert any(u["givenName"] and u["givenName"] != u["givenName"].strip() for u in seed.users)
    group_ids = {g["id"] for g in seed.groups}
    assert any(m in group_ids for g in seed.groups for m in g["members"])  # nested group
    emails = {(z.get("email") or "").lower() for z in seed.zammad_users}
    assert "lena.fischer@contoso.example" in emails


def test_bench_seed_generates_a_large_tenant_with_a_share_in_zammad() -> None:
    seed = bench_seed(1000, 0.25)
    assert len(seed.users) == 1000 and len(seed.groups[0]["members"]) == 1000
    assert len([z for z in seed.zammad_users if z.get("entra_key")]) == 250
    assert load_seed("bench:10:0.5").users[0]["id"] == seed.users[0]["id"]


def test_seed_files_load(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tenant_id": "t",
                "domain": "x.example",
                "users": [{"id": "u1", "displayName": "U"}],
                "groups": [{"id": "g1", "displayName": "G", "members": ["u1"]}],
            }
        )
    )
    assert load_seed(str(path)).groups[0]["members"] == ["u1"]


def test_the_curl_walkthrough_in_the_docs_works(sandbox: Sandbox) -> None:
    """docs/sandbox.md: with only curl and sandbox.json, get a token, page members, list users."""
    import shutil
    import subprocess

    if not (shutil.which("curl") and shutil.which("jq")):
        import pytest

        pytest.skip("curl and jq are needed")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sandbox.md").read_text()
    script = (
        doc.split("## With curl only", 1)[1].split("```", 2)[1].replace("cd sandbox-state", f"cd {sandbox.state_dir}")
    )
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=sandbox.state_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '"@odata.nextLink"' in result.stdout and "anna.schmidt@contoso.example" in result.stdout
    assert '"login": "nicole.braun@zammad.org"' in result.stdout
