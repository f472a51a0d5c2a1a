"""``make demo`` (scripts/demo.sh): it comes up, its printed commands work in a fresh shell, and
Ctrl-C or SIGTERM (also twice) stops every process it started, quickly, leaving no sandbox.json.

The demo runs with its state and DAGSTER_HOME under tmp_path and in a session of its own, so the
test can signal it as a terminal signals its foreground process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
UI_TIMEOUT_S = 150  # the first sync runs before the UI starts
EXIT_TIMEOUT_S = 30  # the script's own bound is DEMO_STOP_TIMEOUT (10 s) plus a little
FOREIGN_ENV = ("ENTRASYNC_", "ZAMMAD_", "ENTRA_", "DAGSTER_")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clean_env() -> dict[str, str]:
    """The caller's environment minus everything the demo or entrasync would pick up."""
    return {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}


@dataclass
class Proc:
    pid: int
    sid: int
    state: str
    cmdline: str
    environ: bytes = field(repr=False)  # holds the demo's secrets: never in a failure message

    def __str__(self) -> str:
        return f"{self.pid} [{self.state}] sid={self.sid} {self.cmdline[:160]}"


def _processes() -> Iterator[Proc]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session ...
        yield Proc(int(entry.name), int(fields[3]), fields[0], cmdline, environ)


@dataclass
class Demo:
    """A running ``bash scripts/demo.sh`` and what identifies its processes."""

    proc: subprocess.Popen[bytes]
    state: Path
    home: Path
    port: int
    log: Path
    sessions: set[int] = field(default_factory=set)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ours(self) -> list[Proc]:
        """Live processes of the demo: in a session it started, or with its DAGSTER_HOME."""
        marker = b"DAGSTER_HOME=" + str(self.home).encode() + b"\0"
        found = [p for p in _processes() if p.state != "Z" and (p.sid in self.sessions or marker in p.environ)]
        self.sessions |= {p.sid for p in found}
        return found

    def signal(self, signum: int) -> None:
        """Signal the foreground process group, as Ctrl-C in a terminal does."""
        os.killpg(self.proc.pid, signum)

    def kill_all(self) -> None:
        for p in self.ours():
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    assert (REPO / ".venv" / "bin" / "entrasync").exists(), "make venv first: the demo uses .venv's entrasync"
    port = _free_port()
    log = tmp_path / "demo.out"
    env = {
        **_clean_env(),
        "DEMO_PORT": str(port),
        "DEMO_STATE": str(tmp_path / "demo-state"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "demo.sh")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = Demo(proc, tmp_path / "demo-state", tmp_path / "dagster_home", port, log, {proc.pid})
    try:
        yield running
    finally:
        running.kill_all()


def _wait_for_ui(demo: Demo) -> None:
    deadline = time.monotonic() + UI_TIMEOUT_S
    while time.monotonic() < deadline:
        assert demo.proc.poll() is None, f"the demo ended early:\n{demo.output()[-4000:]}"
        try:
            if requests.get(f"http://127.0.0.1:{demo.port}/server_info", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    pytest.fail(f"no Dagster UI after {UI_TIMEOUT_S} s:\n{demo.output()[-4000:]}")


def _stop(demo: Demo, *signals: int) -> tuple[int, float]:
    """Send the signals 50 ms apart; the exit code and how long the demo took to end."""
    demo.ours()  # note every session before the signal
    started = time.monotonic()
    for signum in signals:
        demo.signal(signum)
        time.sleep(0.05)
    code = demo.proc.wait(EXIT_TIMEOUT_S)
    return code, time.monotonic() - started


def _assert_nothing_left(demo: Demo) -> None:
    deadline = time.monotonic() + 3  # orphans are reparented and reaped asynchronously
    while (left := demo.ours()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "left running:\n" + "\n".join(map(str, left))
    assert not (demo.state / "sandbox.json").exists()


def test_ctrl_c_even_twice_stops_everything_and_the_printed_commands_work(demo: Demo, tmp_path: Path) -> None:
    _wait_for_ui(demo)
    output = demo.output()
    assert f"http://127.0.0.1:{demo.port}" in output
    secrets = [
        value
        for key, value in (line.split("=", 1) for line in (demo.state / "sandbox.env").read_text().splitlines())
        if key in ("ENTRA_CLIENT_SECRET", "ZAMMAD_TOKEN")
    ]
    assert len(secrets) == 2 and not any(s in output for s in secrets), "the demo printed a secret"
    commands = [line[line.index(" . ") + 1 :] for line in output.splitlines() if " && " in line]
    assert len(commands) == 4 and commands[-1].endswith(" status"), output
    for command in commands:  # pasted into a fresh shell elsewhere, while the sandbox still runs
        pasted = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120
        )
        if command.endswith(" status"):  # exit 1 is a verdict other than ok, not a command that failed
            assert pasted.returncode in (0, 1) and "last full sync" in pasted.stdout, f"{command}\n{pasted.stderr}"
            continue
        assert pasted.returncode == 0, f"{command}\n{pasted.stdout}\n{pasted.stderr}"
    kinds = " ".join(p.cmdline for p in demo.ours())
    for kind in ("sandbox serve", "dagster dev", "dagster_webserver", "dagster._daemon"):
        assert kind in kinds, f"{kind} not found among the demo's processes:\n{kinds}"

    # An impatient user: Ctrl-C, Ctrl-C again while the cleanup runs, then a SIGTERM on top.
    code, took = _stop(demo, signal.SIGINT, signal.SIGINT, signal.SIGTERM)
    assert code == 130, demo.output()[-3000:]
    assert took < EXIT_TIMEOUT_S
    _assert_nothing_left(demo)


@pytest.mark.parametrize(
    ("signals", "code"),
    [((signal.SIGINT,), 130), ((signal.SIGTERM, signal.SIGTERM), 143)],
    ids=["ctrl-c", "sigterm-twice"],
)
def test_signals_during_the_first_sync_stop_it_and_the_sandbox(demo: Demo, signals: tuple[int, ...], code: int) -> None:
    deadline = time.monotonic() + 60
    while "==> first sync" not in demo.output():
        assert demo.proc.poll() is None and time.monotonic() < deadline, demo.output()[-3000:]
        time.sleep(0.1)
    exit_code, took = _stop(demo, *signals)
    assert exit_code == code, demo.output()[-3000:]
    assert took < EXIT_TIMEOUT_S
    _assert_nothing_left(demo)
