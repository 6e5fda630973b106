"""Prepares what `docker build` takes from this machine, under build/docker/:

- secrets/: the host's pip index configuration and CA certificates, and its Debian package
  sources where the host is Debian bookworm like the images. The builds mount them as BuildKit
  secrets for the RUN steps that install, so they never land in a layer.
- wheels/: wheels the images install but should not fetch or compile again: torch's CPU build
  (PyPI's plain x86-64 torch is the CUDA build) and this machine's llama-cpp-python build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0+cpu"
CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def pip_config(key: str) -> str:
    """A pip setting as pip itself resolves it: environment first, then config files."""
    env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
    if env:
        return env
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", f"global.{key}"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def remote(urls: str) -> list[str]:
    """The http(s) URLs of a space-separated list; local paths mean nothing in a build."""
    return [u for u in urls.split() if u.startswith(("http://", "https://"))]


def write_pip_conf(path: Path) -> None:
    lines = ["[global]", "cert = /run/secrets/ca.crt"]
    if index := remote(pip_config("index-url")):
        lines.append(f"index-url = {index[0]}")
    if extra := remote(pip_config("extra-index-url")):
        lines.append("extra-index-url = " + " ".join(extra))
    if trusted := pip_config("trusted-host"):
        lines.append(f"trusted-host = {trusted}")
    lines.append(f"timeout = {pip_config('default-timeout') or 60}")
    path.write_text("\n".join(lines) + "\n")


def ca_bundle() -> Path:
    for candidate in (pip_config("cert"), *CA_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    import certifi  # pip's own bundle, where the system has none

    return Path(certifi.where())


def write_apt_sources(path: Path) -> None:
    """deb822 sources for the images' Debian bookworm; only a bookworm host's apply."""
    os_release = Path("/etc/os-release")
    text = os_release.read_text() if os_release.exists() else ""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    if "VERSION_CODENAME=bookworm" in text and "ID=debian" in text and sources:
        path.write_text("\n".join(s.read_text().rstrip() + "\n" for s in sources))
    else:
        path.write_text("# the host is not Debian bookworm: the image's own sources apply\n")


def stage_wheels(wheels: Path, llama_wheels: Path | None) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    if llama_wheels and llama_wheels.is_dir():
        for wheel in llama_wheels.glob("llama_cpp_python-*.whl"):
            if not (wheels / wheel.name).exists():
                shutil.copy2(wheel, wheels)
    if not list(wheels.glob("torch-2.13.0+cpu-*.whl")):
        print(f">> fetching {TORCH} into {wheels}", flush=True)
        extra = os.environ.get("SERVEMESH_TORCH_INDEX")  # e.g. PyTorch's CPU index
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels)]
            + (["--extra-index-url", extra] if extra else [])
            + [TORCH],
            check=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "docker")
    p.add_argument("--llama-wheels", type=Path, help="folder with a llama-cpp-python wheel")
    a = p.parse_args()
    secrets = a.out / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    write_pip_conf(secrets / "pip.conf")
    shutil.copyfile(ca_bundle(), secrets / "ca.crt")
    write_apt_sources(secrets / "apt.sources")
    stage_wheels(a.out / "wheels", a.llama_wheels)
    print(f">> build inputs ready in {a.out}", flush=True)


if __name__ == "__main__":
    main()
