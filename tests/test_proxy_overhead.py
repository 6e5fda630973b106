"""benchmarks/proxy_overhead.py runs end to end on a few calls: every server it starts comes
up, every target answers the same Predict, and the JSON holds each target and the ratios
(the figures themselves belong to `make bench`, not to a test)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import ROOT


def test_proxy_overhead_bench_measures_every_target(tmp_path) -> None:
    out = tmp_path / "proxy_overhead.json"
    small = ["--requests", "40", "--rounds", "1", "--warm-up", "10", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "benchmarks/proxy_overhead.py", *small],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    for concurrency in ("1", "16"):
        targets = report["results"][concurrency]
        assert {"direct", "raw grpc.aio relay", "gateway", "gateway, 2 workers"} <= set(targets)
        assert all(t["requests_per_s"] > 0 for t in targets.values())
    assert report["ratios"]["gateway_added_p50_over_relay"] > 0
    assert "gateway / relay req/s at concurrency 16" in done.stdout
