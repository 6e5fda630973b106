"""Runs every lab notebook headless against a running mesh (`make labs`), or checks that the
committed notebooks are clean (`--lint`, part of `make lint`).

Writes the executed notebooks, their plots (PNG), one JSON of headline figures per lab and
`summary.json` to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from labkit.notebooks import PENDING, execute, notebooks, problems


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", default="localhost:50051", help="the mesh's gateway")
    p.add_argument("--management", default="localhost:7071", help="TorchServe's gRPC management")
    p.add_argument("--key-file", default="run/torchserve/key_file.json", help="TorchServe's keys")
    p.add_argument(
        "--predictor-metrics",
        default="http://localhost:9161/metrics",
        help="the llama predictor's Prometheus metrics",
    )
    p.add_argument("--out", type=Path, default=Path("run/labs"))
    p.add_argument("--quick", action="store_true", help="small workloads (what `make test` runs)")
    p.add_argument("--only", default="", help="run the labs whose file name contains this")
    p.add_argument("--lint", action="store_true", help="only check the committed notebooks")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labs = notebooks(args.only)
    if args.lint:
        found = [problem for lab in labs for problem in problems(lab)]
        print("\n".join(found) or f"{len(labs)} lab notebooks are clean")
        return 1 if found else 0
    out = args.out.resolve()
    parameters = {
        "target": args.target,
        "quick": args.quick,
        "out_dir": str(out),
        "management": args.management,
        "key_file": str(Path(args.key_file).resolve()),
        "predictor_metrics": args.predictor_metrics,
    }
    failed, summary = [], {}
    for i, lab in enumerate(labs, 1):
        print(f"[{i}/{len(labs)}] {lab.stem} ...", flush=True)
        started = time.perf_counter()
        try:
            execute(lab, out, parameters)
        except Exception as error:  # a failed cell; the next lab still runs
            failed.append(lab.stem)
            # papermill's error carries the cell's exception; the executed notebook has the rest
            name = getattr(error, "ename", type(error).__name__)
            why = f"{name}: {getattr(error, 'evalue', error)}"
            print(f"[{i}/{len(labs)}] {lab.stem} FAILED: {why} (see {out / lab.name})", flush=True)
            continue
        print(f"[{i}/{len(labs)}] {lab.stem} done in {time.perf_counter() - started:.0f} s")
        record = out / f"{lab.stem}.json"
        if record.exists():
            summary[lab.stem] = json.loads(record.read_text())["figures"]
    for name, why in PENDING.items():
        print(f"{name}: pending, {why}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"executed notebooks, plots and figures in {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
