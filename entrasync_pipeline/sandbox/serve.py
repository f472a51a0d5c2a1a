"""Start the sandbox: both emulators on 127.0.0.1, the state file, the env file, optionally a config.

Writes ``DIR/sandbox.json`` (DESIGN.md §4.2) and ``DIR/sandbox.env`` (§4.4) once both servers
listen, so a caller that waits for ``sandbox.json`` can use it at once. Secrets, the CA, the
client certificate (plain and passphrase-protected) and the workload issuer's key are new on every
start. A federated token for the sync app is kept fresh in ``DIR/federated-token`` while it runs.
"""

from __future__ import annotations

import gc
import json
import logging
import secrets
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from entrasync_pipeline.sandbox.federation import TokenFile, WorkloadIssuer
from entrasync_pipeline.sandbox.graph import GraphApp
from entrasync_pipeline.sandbox.httpd import SandboxServer
from entrasync_pipeline.sandbox.seeds import Seed, load_seed
from entrasync_pipeline.sandbox.tls import make_client_certificate, make_server_tls, new_signing_key
from entrasync_pipeline.sandbox.token_endpoint import AppRegistration, TokenIssuer
from entrasync_pipeline.sandbox.zammad_api import ZammadApp

log = logging.getLogger(__name__)

# OrgContact.Read.All: organizational contacts in groups (and /contacts) come with their properties.
SYNC_ROLES = ["GroupMember.Read.All", "User.Read.All", "OrgContact.Read.All"]
ADMIN_ROLES = ["User.ReadWrite.All", "GroupMember.ReadWrite.All"]
EXTRA_APPS = {
    "members_only_app": ["GroupMember.Read.All"],
    "basic_app": ["GroupMember.Read.All", "User.ReadBasic.All"],
    "users_only_app": ["User.Read.All"],
    # the sync app before contacts: members that are contacts come with limited information
    "no_contacts_app": ["GroupMember.Read.All", "User.Read.All"],
    # what checkMemberGroups/getMemberGroups of a contact need (directoryobject-checkmembergroups.md)
    "directory_reader_app": ["Directory.Read.All"],
}
POLL_INTERVAL_S = 0.1  # how often the main thread looks at the stop flag
SHUTDOWN_TIMEOUT_S = 5.0  # upper bound on stopping both servers


@dataclass
class Sandbox:
    """Both running servers and what a client needs to reach them."""

    seed: Seed
    state_dir: Path
    graph: SandboxServer
    zammad: SandboxServer
    info: dict[str, Any]
    token_file: TokenFile

    def stop(self) -> None:
        self.token_file.stop()
        self.graph.stop()
        self.zammad.stop()


def _workload_issuer(state_dir: Path, tenant_id: str) -> tuple[WorkloadIssuer, Path]:
    """A cluster-like OIDC issuer (an AKS issuer URL has this shape) and its key file for tests.

    ``.invalid`` is a reserved name: nothing resolves it, and nothing needs to (see ``federation``).
    """
    issuer = WorkloadIssuer(f"https://oidc.sandbox.invalid/{tenant_id}/{uuid.uuid4()}/", new_signing_key())
    key_path = state_dir / "federated-issuer.key.pem"
    issuer.write_key(key_path)
    return issuer, key_path


def _app(name: str, roles: list[str], certificate: bytes | None = None) -> AppRegistration:
    return AppRegistration(
        name=name,
        client_id=str(uuid.uuid4()),
        client_secret=secrets.token_urlsafe(30).replace("-", "~")[:40],
        roles=roles,
        certificate_pem=certificate,
    )


def start_sandbox(seed: Seed, state_dir: Path, graph_port: int = 0, zammad_port: int = 0) -> Sandbox:
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir.resolve()  # absolute paths in sandbox.json and the config work from any cwd
    tls = make_server_tls(state_dir)
    client_cert = make_client_certificate(state_dir, "sync-app")
    sync_app = _app("entrasync-sync", SYNC_ROLES, client_cert.certificate_pem)
    workload, workload_key = _workload_issuer(state_dir, seed.tenant_id)
    sync_app.federated_credentials.append(workload.credential())
    token_file = TokenFile(workload, state_dir / "federated-token")
    admin_app = _app("entrasync-sandbox-admin", ADMIN_ROLES)
    extra = {name: _app(name, roles) for name, roles in EXTRA_APPS.items()}
    apps = {a.client_id: a for a in [sync_app, admin_app, *extra.values()]}
    control_key = secrets.token_urlsafe(24)
    issuer = TokenIssuer(seed.tenant_id, new_signing_key())
    graph = SandboxServer(GraphApp(seed, issuer, apps), control_key, tls.context, port=graph_port)
    zammad_app = ZammadApp(seed)
    zammad = SandboxServer(zammad_app, control_key, tls.context, port=zammad_port)
    graph.start()
    zammad.start()
    token_file.start()
    info = {
        "tenant_id": seed.tenant_id,
        "authority": f"{graph.base_url}/{seed.tenant_id}",
        "graph_url": graph.base_url,
        "sync_app": {
            "client_id": sync_app.client_id,
            "client_secret": sync_app.client_secret,
            "certificate_path": str(client_cert.certificate_path),
            "private_key_path": str(client_cert.private_key_path),
            "encrypted_private_key_path": str(client_cert.encrypted_private_key_path),
            "private_key_passphrase": client_cert.private_key_passphrase,
        },
        "federated": {
            "issuer": workload.issuer,
            "subject": workload.subject,
            "audience": workload.credential().audiences[0],
            "token_file": str(token_file.path),
            "signing_key_path": str(workload_key),
        },
        "admin_app": {"client_id": admin_app.client_id, "client_secret": admin_app.client_secret},
        "groups": seed.group_ids(),
        "zammad_url": zammad.base_url,
        "zammad_token": zammad_app.token_values["sync"],
        "ca_bundle": str(tls.ca_bundle),
        "control_key": control_key,
    }
    return Sandbox(seed, state_dir, graph, zammad, info, token_file)


def write_state_files(sandbox: Sandbox, config_path: Path | None) -> None:
    info = sandbox.info
    env = {
        "ENTRA_CLIENT_SECRET": info["sync_app"]["client_secret"],
        "ENTRA_CLIENT_CERTIFICATE": info["sync_app"]["certificate_path"],
        "ENTRA_CLIENT_KEY": info["sync_app"]["private_key_path"],
        "ENTRA_CLIENT_KEY_PASSPHRASE": info["sync_app"]["private_key_passphrase"],
        "AZURE_FEDERATED_TOKEN_FILE": info["federated"]["token_file"],
        "ZAMMAD_TOKEN": info["zammad_token"],
    }
    if config_path is not None:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config = sandbox_config(info, state_dir=sandbox.state_dir)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        env["ENTRASYNC_CONFIG"] = str(config_path.resolve())
    env_file = sandbox.state_dir / "sandbox.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    env_file.chmod(0o600)
    # sandbox.json last: its appearance tells waiting callers that everything is ready.
    tmp = sandbox.state_dir / "sandbox.json.tmp"
    tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(sandbox.state_dir / "sandbox.json")


# The demo's agent group: its members become agents with access to Zammad's second-level queue and
# read access to "Users" (groups[].zammad_groups).
DEMO_GROUP_ACCESS: dict[str, dict[str, Any]] = {
    "IT Support Tier 2": {"roles": ["Agent"], "zammad_groups": {"2nd Level": ["full"], "Users": ["read"]}},
}


def sandbox_config(info: dict[str, Any], profile: str = "sandbox", state_dir: Path | None = None) -> dict[str, Any]:
    """A config with one profile that syncs every group of the seed into the sandbox Zammad.

    With ``state_dir`` the audit store goes there too, so the config works as is and a sandbox's
    audit trail never mixes with the one in $DAGSTER_HOME.
    """
    config: dict[str, Any] = {
        "tls": {"ca_bundle": info["ca_bundle"]},
        "profiles": {
            profile: {
                "entra": {
                    "tenant_id": info["tenant_id"],
                    "client_id": info["sync_app"]["client_id"],
                    "credential": "certificate",
                    "authority_host": info["graph_url"],
                    "graph_url": info["graph_url"],
                },
                "groups": [
                    {"id": gid, "name": name, **DEMO_GROUP_ACCESS.get(name, {})} for name, gid in info["groups"].items()
                ],
                "zammad": {"url": info["zammad_url"]},
                "organization": {"from": ["companyName"]},  # the demo's companies become organizations
                "contacts": "members",  # the demo's "Vendor Support" contact becomes a customer
            }
        },
    }
    if state_dir is not None:
        config["audit"] = {"url": f"sqlite:///{state_dir.resolve() / 'audit.db'}"}
    return config


class _StopFlag:
    """Set by the SIGINT/SIGTERM handler.

    A plain attribute write is all a signal handler may safely do here: ``Event.set()`` from a
    handler re-enters the Event's non-reentrant lock if the main thread holds it, and deadlocks.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def handler(self, signum: int, _frame: object) -> None:
        self.signum = signum


def serve(
    seed_name: str,
    state_dir: Path,
    config_path: Path | None = None,
    graph_port: int = 0,
    zammad_port: int = 0,
    stop: threading.Event | None = None,
) -> Sandbox:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); returns the stopped sandbox.

    The main thread polls; shutdown is bounded (``SHUTDOWN_TIMEOUT_S``) and further signals during
    it are no-ops, so a second Ctrl-C never hangs. ``sandbox.json`` is removed on every exit.
    """
    flag = _StopFlag()
    seed = load_seed(seed_name)
    sandbox = start_sandbox(seed, state_dir, graph_port, zammad_port)
    previous: dict[int, Any] = {}
    try:
        # Handlers go in before sandbox.json appears: a caller may signal as soon as it sees the file.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, flag.handler)
        freeze_heap()
        write_state_files(sandbox, config_path)
        log.info("sandbox up: graph %s, zammad %s", sandbox.graph.base_url, sandbox.zammad.base_url)
        while flag.signum is None and not (stop is not None and stop.is_set()):
            time.sleep(POLL_INTERVAL_S)
    finally:
        (state_dir / "sandbox.json").unlink(missing_ok=True)
        _stop_bounded(sandbox)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return sandbox


def _stop_bounded(sandbox: Sandbox) -> None:
    """Stop both servers in a daemon thread, waiting at most ``SHUTDOWN_TIMEOUT_S``."""
    stopper = threading.Thread(target=sandbox.stop, name="sandbox-stop", daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_TIMEOUT_S)
    if stopper.is_alive():
        log.warning("sandbox servers did not stop within %.0f s; exiting anyway", SHUTDOWN_TIMEOUT_S)


def freeze_heap() -> None:
    """Move the seeded state out of the cyclic GC's reach.

    A 100,000-user tenant is ~10^6 live containers; without this every full collection walks
    them all, request time grows with tenant size and the benchmarks measure the emulator.
    """
    gc.collect()
    gc.freeze()


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``sandbox.env`` (KEY=VALUE lines)."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env
