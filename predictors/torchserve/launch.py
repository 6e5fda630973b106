"""Starts TorchServe in the foreground with servemesh's config.properties and chosen ports.

Writes the effective config.properties into the run folder and runs TorchServe there, so its
key_file.json (the token authorization keys) and logs land in that folder too. Run it with
the TorchServe environment's Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SERVEMESH_TORCHSERVE_{name}", default)


def render(template: str, overrides: dict[str, str]) -> str:
    """The template with `key=value` lines replaced, continuation lines kept as they are."""
    lines, seen = [], set()
    for line in template.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.startswith((" ", "#")) and key in overrides:
            lines.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items() if k not in seen]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--run-dir", type=Path, default=Path(_env("RUN_DIR", str(ROOT / "run" / "torchserve")))
    )
    p.add_argument(
        "--model-store",
        type=Path,
        default=Path(_env("MODEL_STORE", str(ROOT / "build" / "model-store"))),
    )
    p.add_argument("--config", type=Path, default=HERE / "config.properties")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    p.add_argument("--http-port", type=int, default=int(_env("HTTP_PORT", "8080")))
    p.add_argument("--management-port", type=int, default=int(_env("MANAGEMENT_PORT", "8081")))
    p.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "8082")))
    p.add_argument("--grpc-port", type=int, default=int(_env("GRPC_PORT", "7070")))
    p.add_argument(
        "--grpc-management-port", type=int, default=int(_env("GRPC_MANAGEMENT_PORT", "7071"))
    )
    p.add_argument("--worker-port", type=int, default=int(_env("WORKER_PORT", "9000")))
    p.add_argument("--models", default=_env("MODELS", "all"), help="comma-separated, or all")
    # Off only where the network already admits nobody but the gateway (a Kubernetes
    # NetworkPolicy): pods cannot share the key file TorchServe writes at start, and each
    # replica would write other keys.
    p.add_argument(
        "--token-auth",
        action=argparse.BooleanOptionalAction,
        default=_env("TOKEN_AUTH", "on").lower() not in ("off", "false", "no", "0"),
        help="TorchServe's token authorization (key_file.json in the run folder); default on",
    )
    a = p.parse_args()
    if not any(a.model_store.glob("*.mar")):
        sys.exit(f"no model archives in {a.model_store}; run `make models` first")
    a.run_dir.mkdir(parents=True, exist_ok=True)
    # TorchServe unpacks archives under java.io.tmpdir and re-uses what it finds there, so a
    # rebuilt archive would not be seen: each start gets a fresh folder of its own.
    tmp = a.run_dir / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    config = a.run_dir / "config.properties"
    config.write_text(
        render(
            a.config.read_text(),
            {
                "inference_address": f"http://{a.host}:{a.http_port}",
                "management_address": f"http://{a.host}:{a.management_port}",
                "metrics_address": f"http://{a.host}:{a.metrics_port}",
                "grpc_inference_address": a.host,
                "grpc_inference_port": str(a.grpc_port),
                "grpc_management_address": a.host,
                "grpc_management_port": str(a.grpc_management_port),
                "initial_worker_port": str(a.worker_port),
                "model_store": str(a.model_store.resolve()),
                "load_models": a.models,
                "disable_token_authorization": str(not a.token_auth).lower(),
                "vmargs": f"-Xmx1g -XX:+UseContainerSupport -Djava.io.tmpdir={tmp}",
            },
        )
    )
    os.chdir(a.run_dir)
    # TorchServe's pid file lives in the temp folder: one per instance, so a second
    # TorchServe (tests beside `make up`) does not think it is already running.
    os.environ["TMPDIR"] = str(tmp)
    os.environ["LOG_LOCATION"] = str(a.run_dir / "logs")
    os.environ["METRICS_LOCATION"] = str(a.run_dir / "logs")
    torchserve = Path(sys.executable).parent / "torchserve"
    os.execv(
        torchserve,
        [str(torchserve), "--start", "--foreground", "--ncs", "--ts-config", str(config)],
    )


if __name__ == "__main__":
    main()
