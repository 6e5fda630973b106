"""Starts, stops and reports the mesh's processes on one machine, without Docker.

Each process gets `NAME.pid` and `NAME.log` in the run folder. `up` skips a process that
already runs, `down` stops exactly the processes whose pid files `up` wrote.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from deploy.health_probe import health_status

ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = 300.0  # TorchServe loads three models on two cores in about a minute
STOP_TIMEOUT_S = 20.0
EARLY_EXIT_S = 2.0
# TorchServe's interpreter: the Makefile passes its TS_VENV's; tests import this one.
TS_PYTHON = Path(
    os.environ.get("SERVEMESH_TS_PYTHON", ROOT / ".venv-torchserve" / "bin" / "python")
)


@dataclass(frozen=True)
class Process:
    name: str
    command: list[str]
    health: str | None
    env: dict[str, str] = field(default_factory=dict)  # added to meshctl's own environment
    health_service: str = ""  # the grpc.health.v1 name checked at `health`; "": the server's


def load_processes(path: Path, run_dir: Path) -> list[Process]:
    with open(path, "rb") as f:
        table = tomllib.load(f)
    names = {"python": sys.executable, "ts_python": str(TS_PYTHON), "run_dir": str(run_dir)}
    return [
        Process(
            p["name"],
            [a.format(**names) for a in p["command"]],
            p.get("health"),
            {k: v.format(**names) for k, v in p.get("env", {}).items()},
            p.get("health_service", ""),
        )
        for p in table["process"]
    ]


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid`, so a recycled pid is not mistaken for ours; None when
    it does not run. A zombie has exited: only its parent (a lab that started side servers
    in its own process) has not reaped it yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, name: str) -> Path:
        return self.path / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.path / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        """The pid of our process `name` if it still runs."""
        try:
            pid_text, started = self.pid_file(name).read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        return pid if _start_time(pid) == started else None

    def record(self, name: str, pid: int) -> None:
        self.pid_file(name).write_text(f"{pid} {_start_time(pid)}\n")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _exited(proc: Process, child: subprocess.Popen[bytes], run: RunDir) -> bool:
    """Whether `child` has exited; if so, says so with the end of its log."""
    if child.poll() is None:
        return False
    print(
        f"{proc.name}: exited with {child.returncode}; its log ends with:\n"
        f"{_tail(run.log(proc.name))}",
        file=sys.stderr,
    )
    return True


def up(processes: list[Process], run: RunDir) -> int:
    run.path.mkdir(parents=True, exist_ok=True)
    for proc in processes:
        if (pid := run.running_pid(proc.name)) is not None:
            print(f"{proc.name}: already running (pid {pid})")
            continue
        with open(run.log(proc.name), "ab") as log:
            child = subprocess.Popen(
                proc.command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **proc.env},
                start_new_session=True,
            )
        run.record(proc.name, child.pid)
        if proc.health is None:
            time.sleep(EARLY_EXIT_S)
            if _exited(proc, child, run):
                return 1
            print(f"{proc.name}: started (pid {child.pid})")
            continue
        print(
            f"{proc.name}: started (pid {child.pid}), waiting for health on {proc.health}"
            + (f" ({proc.health_service})" if proc.health_service else ""),
            flush=True,
        )
        started = time.monotonic()
        deadline, next_report = started + HEALTH_TIMEOUT_S, started + 10
        while (status := health_status(proc.health, proc.health_service)) != "SERVING":
            if time.monotonic() > next_report:
                print(
                    f"{proc.name}: {status} after {time.monotonic() - started:.0f} s, waiting",
                    flush=True,
                )
                next_report += 10
            if _exited(proc, child, run):
                return 1
            if time.monotonic() > deadline:
                print(
                    f"{proc.name}: not SERVING after {HEALTH_TIMEOUT_S:.0f} s ({status}); "
                    f"see {run.log(proc.name)}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)
        print(f"{proc.name}: SERVING")
    return 0


def down(processes: list[Process], run: RunDir) -> int:
    for proc in reversed(processes):
        pid = run.running_pid(proc.name)
        run.pid_file(proc.name).unlink(missing_ok=True)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _start_time(pid) is not None:
            os.killpg(pid, signal.SIGKILL)
            print(f"{proc.name}: killed (pid {pid}) after {STOP_TIMEOUT_S:.0f} s")
        else:
            print(f"{proc.name}: stopped (pid {pid})")
    return 0


def status(processes: list[Process], run: RunDir) -> int:
    all_serving = True
    for proc in processes:
        pid = run.running_pid(proc.name)
        health = health_status(proc.health, proc.health_service) if pid and proc.health else "-"
        all_serving &= pid is not None and health in ("SERVING", "-")
        state = f"running (pid {pid})" if pid else "stopped"
        print(
            f"{proc.name:10} {state:22} health {health:12} {proc.health or '-':16} "
            f"log {run.log(proc.name)}"
        )
    return 0 if all_serving else 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "run")
    parser.add_argument(
        "--processes", type=Path, default=Path(__file__).with_name("processes.toml")
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args()
    run = RunDir(args.run_dir.resolve())
    processes = load_processes(args.processes, run.path)
    return {"up": up, "down": down, "status": status}[args.action](processes, run)


if __name__ == "__main__":
    sys.exit(main())
