"""`servemesh bench` against the live mesh: it measures, and writes its JSON."""

from __future__ import annotations

import json
import subprocess

from tests.servers import BIN, MODEL


def bench(mesh, out, *args: str) -> subprocess.CompletedProcess[str]:
    """`servemesh bench` against the session's gateway, writing JSON to `out`."""
    return subprocess.run(
        [
            str(BIN / "servemesh"),
            "bench",
            "--url",
            f"grpc://{mesh.gateway.address}",
            "--out",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_writes_metrics_for_each_concurrency_level(mesh, tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = bench(
        mesh,
        out,
        "--model",
        MODEL,
        "--num-prompts",
        "4",
        "--input-len",
        "8:12",
        "--output-len",
        "8",
        "--concurrency",
        "1",
        "4",
        "--ttft-slo-ms",
        "5000",
    )
    assert result.returncode == 0, result.stderr
    assert "TTFT p50" in result.stdout
    rows = json.loads(out.read_text())["results"]
    assert [r["concurrency"] for r in rows] == [1, 4]
    for row in rows:
        assert row["completed"] == 4 and row["errors"] == {}
        assert 4 <= row["output_tokens"] <= 32
        assert row["output_tok_s"] > 0 and row["request_throughput"] > 0
        assert 0 < row["ttft_ms"]["p50"] <= row["e2e_ms"]["p50"]
        assert row["itl_ms"]["p99"] >= row["itl_ms"]["p50"] > 0
        assert row["goodput_req_s"] <= row["request_throughput"]


def test_bench_counts_errors_by_status_code(mesh, tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = bench(mesh, out, "--model", "no-such-model", "--num-prompts", "3", "--output-len", "4")
    assert result.returncode == 1
    (row,) = json.loads(out.read_text())["results"]
    assert row["errors"] == {"NOT_FOUND": 3} and row["completed"] == 0
