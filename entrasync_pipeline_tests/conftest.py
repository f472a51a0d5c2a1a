"""Shared fixtures: one sandbox per test session, reset before every test that uses it.

The sandbox runs as a real ``entrasync sandbox serve`` subprocess on 127.0.0.1 (STYLE.md §2.11):
tests talk to it over loopback HTTPS with its own CA, exactly as the product does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest
import requests
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

if TYPE_CHECKING:
    from entrasync_pipeline.runtime import ProfileRuntime

# CI explores the same examples every time (a red CI must be reproducible); locally, new ones.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
# `make mutation` (docs/mutation.md): the same examples on every run and for every mutant, no example
# database to replay, no shrinking (a mutant only needs to fail), no timing-based health check.
hypothesis_settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=list(HealthCheck),
)
hypothesis_settings.load_profile(
    os.environ.get("ENTRASYNC_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the mutation profile, table tests run before properties: most mutants die in a table
    test, and mutmut stops at the first failure (mutmut hands the tests over in set order)."""
    if hypothesis_settings.default is hypothesis_settings.get_profile("mutation"):
        items.sort(key=lambda item: getattr(getattr(item, "obj", None), "is_hypothesis_test", False))


# Keep the host's proxy and CA variables from leaking into the code under test.
for _var in (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "AZURE_FEDERATED_TOKEN_FILE",
):
    os.environ.pop(_var, None)


def start_sandbox_process(
    state_dir: Path, seed: str = "demo", config: Path | None = None, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``entrasync sandbox serve`` and wait for its state file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "sandbox.json").unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "entrasync_pipeline.cli",
        "sandbox",
        "serve",
        "--seed",
        seed,
        "--state-dir",
        str(state_dir),
    ]
    if config is not None:
        cmd += ["--write-config", str(config)]
    log = open(state_dir / "sandbox.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    state_file = state_dir / "sandbox.json"
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"sandbox did not start: {(state_dir / 'sandbox.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads(state_file.read_text())


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout)
    return proc.returncode


@dataclass
class Sandbox:
    """The running sandbox (``info`` is sandbox.json) and its control API."""

    info: dict[str, Any]
    state_dir: Path

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.info["ca_bundle"]
        session.trust_env = False
        return session

    def _server(self, which: str) -> str:
        return self.info["graph_url"] if which == "graph" else self.info["zammad_url"]

    def control(self, method: str, which: str, action: str, payload: Any = None) -> Any:
        with self.session() as s:
            response = s.request(
                method,
                f"{self._server(which)}/_sandbox/{action}",
                json=payload,
                headers={"X-Sandbox-Key": self.info["control_key"]},
                timeout=30,
            )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        for which in ("graph", "zammad"):
            self.control("POST", which, "reset")

    def faults(self, which: str, *rules: dict[str, Any], seed: int | None = 7) -> None:
        self.control("PUT", which, "faults", {"rules": list(rules), "seed": seed})

    def stats(self, which: str) -> dict[str, Any]:
        return self.control("GET", which, "stats")

    def state(self, which: str) -> dict[str, Any]:
        return self.control("GET", which, "state")

    def app(self, name: str) -> dict[str, Any]:
        """Credentials of any app registration of the sandbox tenant (incl. the extra test apps)."""
        return next(a for a in self.state("graph")["apps"] if a["name"] == name)

    def zammad_token(self, name: str) -> str:
        return self.state("zammad")["tokens"][name]["token"]

    def graph_token(self, client_id: str, client_secret: str) -> str:
        with self.session() as s:
            response = s.post(
                f"{self.info['authority']}/oauth2/v2.0/token",
                timeout=30,
                data={
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "grant_type": "client_credentials",
                    "scope": f"{self.info['graph_url']}/.default",  # the sandbox grants only its own Graph
                },
            )
        response.raise_for_status()
        return response.json()["access_token"]

    def admin_token(self) -> str:
        return self.graph_token(self.info["admin_app"]["client_id"], self.info["admin_app"]["client_secret"])

    def sync_token(self) -> str:
        return self.graph_token(self.info["sync_app"]["client_id"], self.info["sync_app"]["client_secret"])

    def env(self) -> dict[str, str]:
        from entrasync_pipeline.sandbox.serve import read_env_file

        return read_env_file(self.state_dir / "sandbox.env")


@pytest.fixture(scope="session")
def sandbox_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    proc, info = start_sandbox_process(state_dir)
    try:
        yield Sandbox(info, state_dir)
    finally:
        stop_process(proc)


@pytest.fixture
def sandbox(sandbox_session: Sandbox) -> Sandbox:
    """The session's sandbox, back at its seed, with no faults and zeroed counters."""
    sandbox_session.reset()
    return sandbox_session


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[requests.Session]:
    with sandbox.session() as session:
        yield session


@pytest.fixture
def environ(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """The sandbox's secrets as the product reads them, and a private DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    return {**sandbox.env(), "DAGSTER_HOME": str(home)}


@pytest.fixture
def config_path(sandbox: Sandbox, tmp_path: Path) -> Path:
    from entrasync_pipeline_tests.factories import write_config

    return write_config(tmp_path / "entrasync.yaml", sandbox.info)


@pytest.fixture
def profile(config_path: Path, environ: dict[str, str]) -> Iterator["ProfileRuntime"]:
    from entrasync_pipeline.runtime import ProfileRuntime
    from entrasync_pipeline.settings import load_settings

    with ProfileRuntime("sandbox", load_settings(config_path), environ) as runtime:
        yield runtime


@pytest.fixture
def ready_profile(profile: "ProfileRuntime") -> "ProfileRuntime":
    """A profile whose Zammad already has the custom attributes (zammad-setup ran)."""
    from entrasync_pipeline.steps import setup_zammad

    setup_zammad(profile)
    return profile


class _Webhook:
    """A local JSON webhook receiver (what apprise's json:// posts to)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    hook = _Webhook()
    yield hook
    hook.server.shutdown()


class _Smtp:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                outer.messages.append(envelope)
                return "250 OK"

        import socket

        with socket.socket() as probe:  # aiosmtpd's readiness check cannot use port 0
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=entrasync@helpdesk.example"
            f"&to=it-admins@helpdesk.example&mode=insecure"
        )


@pytest.fixture
def smtp() -> Iterator[_Smtp]:
    server = _Smtp()
    yield server
    server.controller.stop()


class _Heartbeat:
    """A loopback HTTPS dead man's switch (healthchecks.io-like): records each GET's path.

    Its certificate comes from its own CA; ``ca_bundle`` is a private bundle holding both that CA
    and the sandbox's, as an admin with a private CA would configure ``tls.ca_bundle``.
    """

    def __init__(self, tmp_path: Path, sandbox_ca: Path | None = None) -> None:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import trustme

        ca = trustme.CA()
        self.paths: list[str] = []
        self.status, self.delay_s = 200, 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.paths.append(self.path)
                time.sleep(outer.delay_s)
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.ca_bundle = tmp_path / "ca-bundle.pem"
        extra = sandbox_ca.read_text() if sandbox_ca else ""
        self.ca_bundle.write_text(extra + ca.cert_pem.bytes().decode())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The ping URL; the last segment stands for the check's secret token."""
        return f"https://127.0.0.1:{self.port}/ping/5e3c-secret-token"


@pytest.fixture
def heartbeat(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[_Heartbeat]:
    """A heartbeat receiver; with the sandbox in use, its CA bundle trusts the sandbox too."""
    sandbox_ca = None
    if "sandbox" in request.fixturenames:
        sandbox_ca = Path(request.getfixturevalue("sandbox").info["ca_bundle"])
    receiver = _Heartbeat(tmp_path, sandbox_ca)
    yield receiver
    receiver.server.shutdown()


class _Tinyproxy:
    """A real forward proxy (Debian's tinyproxy) on a free loopback port, for the proxy tests.

    ``rules`` are extra tinyproxy.conf lines: ``BasicAuth user password`` demands credentials,
    ``ConnectPort 443`` refuses every CONNECT to the sandbox's ports (403 Access violation). The
    log records every CONNECT, so a test can tell which hosts went through the proxy.
    """

    def __init__(self, workdir: Path, rules: list[str]) -> None:
        import shutil
        import socket

        binary = shutil.which("tinyproxy")
        if binary is None:
            raise RuntimeError("tinyproxy is not installed: apt-get install tinyproxy (.ci/run installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = workdir / "tinyproxy.log"
        conf = workdir / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.log}"',
            "LogLevel Connect",
            "MaxClients 100",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
            *rules,
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "tinyproxy.err", "wb"),  # noqa: SIM115 - closed with the process
            start_new_session=True,
        )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tinyproxy did not start listening")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tunnels(self) -> list[str]:
        """The ``host:port`` of every CONNECT the proxy was asked for, in order."""
        text = self.log.read_text() if self.log.exists() else ""
        return [
            line.split("CONNECT ", 2)[-1].split()[0]
            for line in text.splitlines()
            if "Request" in line and "CONNECT " in line
        ]

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``tinyproxy()`` starts an open proxy, ``tinyproxy([...rules])`` a restricted one."""
    started: list[_Tinyproxy] = []

    def start(rules: list[str] | None = None) -> _Tinyproxy:
        proxy = _Tinyproxy(tmp_path / f"tinyproxy-{len(started)}", rules or [])
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


# --- fixtures the end-to-end modules share ----------------------------------------------------
@pytest.fixture
def admin(sandbox: Sandbox, http: Any) -> Any:
    """The tenant's admin: Graph and Zammad changed through their real write APIs (tenant.Admin)."""
    from entrasync_pipeline_tests.tenant import Admin

    return Admin(sandbox, http)


@pytest.fixture
def instance() -> Any:
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def dagster_env(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> dict[str, str]:
    """The sandbox's secrets in os.environ, where a job's resources read them."""
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ
