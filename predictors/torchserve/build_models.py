"""Builds the TorchServe model archives listed in models.toml into the model store.

Run with the TorchServe environment's Python (`make models`). An archive is rebuilt only
when its handler, its files or its weights changed; progress goes to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VERSION = "1.0"


def package_path(package: str, path: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {package!r} is not installed in {sys.prefix}; run `make models`")
    return Path(spec.submodule_search_locations[0]) / path


def inputs(model: dict) -> tuple[Path, list[Path]]:
    """The handler and the files an archive packs."""
    files = [(HERE / f).resolve() for f in model.get("files", [])]
    files += [package_path(p["package"], p["path"]) for p in model.get("package_files", [])]
    return (HERE / model["handler"]).resolve(), files


def fingerprint(name: str, handler: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{name} {VERSION}".encode())
    for path in [handler, *files]:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                digest.update(str(file.relative_to(path.parent)).encode())
                with open(file, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()


def build(name: str, handler: Path, files: list[Path], store: Path) -> None:
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    with tempfile.TemporaryDirectory() as staging:
        # The archiver flattens --extra-files; a folder of weights keeps its name this way.
        extra = []
        for file in files:
            target = Path(staging) / file.name
            if file.is_dir():
                shutil.copytree(file, target)
            else:
                target.symlink_to(file)
            extra.append(str(target))
        subprocess.run(
            [
                str(archiver),
                "--model-name",
                name,
                "--version",
                VERSION,
                "--handler",
                str(handler),
                "--extra-files",
                ",".join(extra),
                "--export-path",
                str(store),
                "--force",
            ],
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, default=ROOT / "build" / "model-store")
    parser.add_argument("--models", type=Path, default=HERE / "models.toml")
    args = parser.parse_args()
    with open(args.models, "rb") as f:
        models = tomllib.load(f)["models"]
    args.store.mkdir(parents=True, exist_ok=True)
    for i, (name, model) in enumerate(models.items(), 1):
        handler, files = inputs(model)
        stamp = args.store / f".{name}.fingerprint"
        wanted = fingerprint(name, handler, files)
        archive = args.store / f"{name}.mar"
        prefix = f"[{i}/{len(models)}] {name}:"
        if archive.exists() and stamp.exists() and stamp.read_text() == wanted:
            print(f"{prefix} up to date", flush=True)
            continue
        size = sum(p.stat().st_size for f in files for p in ([f] if f.is_file() else f.rglob("*")))
        print(f"{prefix} building ({size / 1e6:.0f} MB of files)...", flush=True)
        started = time.monotonic()
        build(name, handler, files, args.store)
        stamp.write_text(wanted)
        print(f"{prefix} built {archive.name} in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
