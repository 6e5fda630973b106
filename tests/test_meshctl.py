"""`make up` / `make down` mechanics: start once, report, stop exactly what was started."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.local.ports import free_ports
from tests.servers import ROOT, health_status

MESHCTL = ROOT / "deploy" / "local" / "meshctl.py"


def meshctl(tmp_path: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(MESHCTL),
            "--run-dir",
            str(tmp_path / "run"),
            "--processes",
            str(tmp_path / "processes.toml"),
            action,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, its new parent not done reaping it) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_up_twice_status_and_down(tmp_path) -> None:
    llama, gateway, metrics, gateway_metrics = free_ports(4)
    (tmp_path / "mesh.toml").write_text(
        f'[backends.llama]\nkind = "servemesh"\ntarget = "127.0.0.1:{llama}"\n'
        '[models.smollm2-135m-instruct]\nbackend = "llama"\n'
    )
    (tmp_path / "processes.toml").write_text(
        f'[[process]]\nname = "llama"\nhealth = "127.0.0.1:{llama}"\n'
        f'command = ["{{python}}", "-m", "predictors.llama", "--address", "127.0.0.1:{llama}",'
        f' "--metrics-port", "{metrics}"]\n'
        f'[[process]]\nname = "gateway"\nhealth = "127.0.0.1:{gateway}"\n'
        f'command = ["{{python}}", "-m", "gateway", "--address", "127.0.0.1:{gateway}",'
        f' "--config", "{tmp_path / "mesh.toml"}", "--metrics-port", "{gateway_metrics}"]\n'
    )
    try:
        first = meshctl(tmp_path, "up")
        assert first.returncode == 0, first.stdout + first.stderr
        assert health_status(f"127.0.0.1:{gateway}") == "SERVING"
        pids = {p.stem: int((p.read_text().split())[0]) for p in (tmp_path / "run").glob("*.pid")}
        assert set(pids) == {"llama", "gateway"}

        second = meshctl(tmp_path, "up")
        assert second.returncode == 0
        assert second.stdout.count("already running") == 2
        assert {
            p.stem: int(p.read_text().split()[0]) for p in (tmp_path / "run").glob("*.pid")
        } == pids

        status = meshctl(tmp_path, "status")
        assert status.returncode == 0 and status.stdout.count("SERVING") == 2
    finally:
        down = meshctl(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids.values())
    assert not list((tmp_path / "run").glob("*.pid"))
    assert meshctl(tmp_path, "status").returncode == 3


@pytest.mark.parametrize("server", ["gateway", "predictors.llama"])
def test_a_taken_port_is_one_line_naming_the_flag(tmp_path, server: str) -> None:
    """As when `make up`'s mesh holds the default ports: no traceback, the flag to change."""
    address, metrics = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", metrics))
        taken.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                server,
                f"--address=127.0.0.1:{address}",
                f"--metrics-port={metrics}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if str(metrics) in line]
    assert "--metrics-port" in line and "in use" in line, result.stderr


def test_a_child_that_exited_but_is_not_reaped_is_not_running(tmp_path) -> None:
    """A lab starts side servers from its own process: a server that exited stays a zombie
    until reaped, and `down` must not wait for it, or kill a recycled pid."""
    from deploy.local.meshctl import RunDir

    run = RunDir(tmp_path)
    child = subprocess.Popen(["cat"], stdin=subprocess.PIPE)  # runs until its input closes
    run.record("short", child.pid)
    assert run.running_pid("short") == child.pid
    assert child.stdin is not None
    child.stdin.close()
    deadline = time.monotonic() + 5
    while _alive(child.pid):
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists(), "a zombie until reaped"
    assert run.running_pid("short") is None
    child.wait()
