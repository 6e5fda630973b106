"""The labs' helper logic: notebook hygiene, KV arithmetic, gap splitting, search scoring,
agent accounting and the lab record."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from labkit import Lab, LabCheckFailed
from labkit.agents import Agent, Turn, briefing, per_agent
from labkit.kv import kv_shape
from labkit.load import LoadResult
from labkit.notebooks import notebooks, problems
from labkit.prefill import split_gaps
from labkit.search import cosine_scores, keyword_scores, load_collection, recall_at_k

SMOLLM2_METADATA = {
    "general.architecture": "llama",
    "llama.block_count": "30",
    "llama.attention.head_count": "9",
    "llama.attention.head_count_kv": "3",
    "llama.embedding_length": "576",
}


def _notebook(path: Path, parameters: str = "quick = False\nout_dir = 'x'", outputs=()) -> Path:
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell("print(1)")
    if outputs:
        body.outputs = list(outputs)
        body.execution_count = 1
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, body]), path)
    return path


def test_the_committed_notebooks_are_clean() -> None:
    labs = notebooks()
    assert len(labs) >= 9
    assert [p for lab in labs for p in problems(lab)] == []


def test_a_notebook_with_outputs_or_without_parameters_is_refused(tmp_path: Path) -> None:
    assert problems(_notebook(tmp_path / "clean.ipynb")) == []
    output = nbformat.v4.new_output("stream", name="stdout", text="1\n")
    found = problems(_notebook(tmp_path / "run.ipynb", outputs=[output]))
    assert any("has outputs" in p for p in found)
    assert any("execution count" in p for p in found)
    found = problems(_notebook(tmp_path / "bare.ipynb", parameters="target = 'x'"))
    assert found == ["bare.ipynb: its parameters cell must set quick and out_dir"]


def test_kv_bytes_per_token_of_smollm2() -> None:
    shape = kv_shape(SMOLLM2_METADATA)
    assert (shape.key_dim, shape.value_dim, shape.grouped_query_factor) == (64, 64, 3)
    assert shape.bytes_per_token == 30 * 3 * (64 + 64) * 2 == 23040


def test_kv_shape_without_grouped_query_attention_and_missing_keys() -> None:
    no_gqa = {k: v for k, v in SMOLLM2_METADATA.items() if "head_count_kv" not in k}
    assert kv_shape(no_gqa).kv_heads == 9
    with pytest.raises(KeyError, match=r"llama\.block_count"):
        kv_shape({k: v for k, v in SMOLLM2_METADATA.items() if "block_count" not in k})


def test_gaps_split_at_the_join_and_the_joined_first_token() -> None:
    arrivals = [[0.0, 0.1, 0.2, 0.9, 1.0], [0.05, 0.15, 1.05]]
    before, during = split_gaps(arrivals, join_at=0.2, joined_first_token_at=0.8)
    assert before == pytest.approx([100, 100, 100])
    assert during == pytest.approx([700, 900])  # 0.2 -> 0.9 and 0.15 -> 1.05; 0.9 -> 1.0 after


def test_recall_keyword_and_cosine_scores() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    assert recall_at_k(scores, [0, 1], 1) == 0.5
    assert recall_at_k(scores, [0, 1], 2) == 1.0
    cos = cosine_scores(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0]]))
    assert cos.tolist() == [[1.0, 0.0]]
    assert keyword_scores("the red apple", ["red apple pie", "blue sky"]).tolist() == [2 / 3, 0]


def test_the_collection_labels_point_at_documents() -> None:
    collection = load_collection()
    assert len(collection.documents) == 24
    relevant = collection.relevant_indices()
    assert len(relevant) == len(collection.queries) and max(relevant) < 24


def test_agents_read_the_transcript_and_are_accounted_per_agent() -> None:
    writer = Agent("writer", "You write.", 10)
    turns = [
        Turn("planner", "three points", 50, 10, 0.1, 1.0),
        Turn("writer", "a draft", 80, 20, 0.2, 2.0),
        Turn("writer", "a revision", 120, 20, 0.4, 2.0),
    ]
    text = briefing("Describe a lamp.", turns[:1], writer)
    assert "planner: three points" in text and text.endswith(
        "You are the writer. Write your part now, briefly."
    )
    table = per_agent(turns)
    assert table["writer"] == {
        "turns": 2,
        "prompt_tokens": 200,
        "completion_tokens": 40,
        "seconds": 4.0,
        "ttft_ms_p50": 300.0,
    }


def test_load_result_row() -> None:
    row = LoadResult(4, (0.1, 0.2, 0.3, 0.4), 0.5).row()
    assert row == {"concurrency": 4, "throughput": 8.0, "p50_ms": 300.0, "p99_ms": 400.0}


def test_a_lab_records_figures_and_fails_on_a_check(tmp_path: Path) -> None:
    lab = Lab("99_test", tmp_path, quick=True)
    lab.figure("answer", 42)
    lab.check(True, "something held")
    with pytest.raises(LabCheckFailed, match="expected a finite value is finite"):
        lab.check(False, "a finite value is finite")
    record = json.loads(lab.write().read_text())
    assert record["figures"] == {"answer": 42}
    assert record["checks"] == ["something held"]
