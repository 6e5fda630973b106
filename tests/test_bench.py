"""`servemesh bench` against the live mesh: it measures, and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from servemesh.bench.targets import new_tokens
from tests.servers import BIN, MODEL, ROOT


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


# Shaped as llama.cpp's llama-server streams a completion (recorded with max_tokens=4, cut to
# two tokens and to the fields the count reads): a chunk a token, then one with the finish
# reason and the usage. The empty second text stands for a token that ends inside a character.
LLAMA_SERVER_CHUNKS = [
    {"choices": [{"text": ",", "index": 0, "finish_reason": None}]},
    {"choices": [{"text": "", "index": 0, "finish_reason": None}]},  # inside a character
    {
        "choices": [{"text": "", "index": 0, "finish_reason": "length"}],
        "usage": {"completion_tokens": 2, "prompt_tokens": 2, "total_tokens": 4},
    },
]


def _count(chunks: list[dict]) -> int:
    counted = 0
    for chunk in chunks:
        counted += new_tokens(chunk, counted)
    return counted


def test_openai_stream_counts_tokens_not_chunks() -> None:
    assert _count(LLAMA_SERVER_CHUNKS) == 2
    # Without usage the final chunk counts only when it carries text (a held-back stop
    # candidate, say).
    final = {"choices": [{"text": "", "finish_reason": "stop"}]}
    assert _count([*LLAMA_SERVER_CHUNKS[:2], final]) == 2
    final_with_text = {"choices": [{"text": "!", "finish_reason": "stop"}]}
    assert _count([*LLAMA_SERVER_CHUNKS[:2], final_with_text]) == 3
    # Usage that reports more tokens than chunks came (a server that merged some) wins.
    merged = [LLAMA_SERVER_CHUNKS[0], {**LLAMA_SERVER_CHUNKS[2], "usage": {"completion_tokens": 5}}]
    assert _count(merged) == 5


def test_the_speculative_benchmark_measures_both_workloads_with_and_without_drafts(
    mesh, tmp_path
) -> None:
    out = tmp_path / "speculative.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "speculative.py"),
            "--gateway",
            mesh.gateway.address,
            "--predictor-metrics",
            mesh.metrics.url,
            "--max-tokens",
            "16",
            "--rounds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "edit: prompt lookup / servemesh without drafts x" in result.stdout
    report = json.loads(out.read_text())
    rows = {r["system"]: r for r in report["results"]}
    assert set(rows) == {
        f"{system} [{workload}]"
        for system in ("servemesh", "servemesh, prompt lookup")
        for workload in ("edit", "free")
    }
    assert all(r["completed"] == 4 and r["errors"] == {} for r in rows.values())
    drafted, accepted = report["settings"]["acceptance"]["edit"]
    assert 0 < accepted <= drafted, "the editing prompts must have drafts accepted"
