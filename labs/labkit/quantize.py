"""Re-quantizing a GGUF model with llama.cpp, and its perplexity on a fixed text (lab 6)."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

# A fixed English text, written for this lab, so every precision is scored on the same tokens.
# Plain factual prose: a small model predicts it well, so a precision that hurts shows.
TEXT = (
    "Rivers begin as rain and melting snow. When rain falls on high ground, part of it soaks "
    "into the soil and part of it runs downhill across the surface, gathering in small streams. "
    "These streams join one another and grow into larger channels, and the largest of them "
    "become rivers that carry water all the way to a lake or to the sea. The land that drains "
    "into one river is called its basin, or its catchment. The basin of the Amazon covers more "
    "than seven million square kilometres, about a third of South America, and the river "
    "carries more water than any other on Earth.\n\n"
    "The water in a river is part of a larger loop called the water cycle. Heat from the sun "
    "evaporates water from oceans, lakes and wet ground, and plants release water vapour from "
    "their leaves. The warm, moist air rises and cools, and the vapour condenses into tiny "
    "droplets that form clouds. When the droplets grow heavy enough, they fall back to the "
    "ground as rain, snow or hail. Some of that water flows into rivers within hours; some "
    "sinks deep underground and may stay there for thousands of years before it reaches a "
    "spring or the sea.\n\n"
    "A river also moves rock and soil. Fast water in steep mountain valleys picks up sand and "
    "stones and wears the riverbed down, cutting deep valleys over long periods of time. "
    "Where the land becomes flat, the water slows, drops the finer material it carries, and "
    "begins to bend from side to side in wide loops called meanders. Near the coast, the "
    "sediment settles at the mouth of the river and builds a delta, a fan of low, fertile "
    "land crossed by many smaller channels. The Nile, the Ganges and the Mississippi have all "
    "built large deltas, and for thousands of years people have farmed the rich soil that "
    "their floods leave behind.\n\n"
    "Because rivers supply fresh water for drinking, farming and industry, cities have grown "
    "along their banks since the first civilisations. Today many rivers are held back by dams "
    "that store water and make electricity, and scientists measure their flow to forecast "
    "floods and droughts."
)

# llama.cpp's own names for the precisions this lab uses; each is a LLAMA_FTYPE_MOSTLY_* name.
PRECISIONS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_1", "Q4_0", "Q3_K_M", "Q2_K")
_FALLBACK = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback")
_REPACK = re.compile(r"CPU_REPACK model buffer size =\s*([\d.]+) MiB")


def ftype(precision: str) -> int:
    """llama.cpp's file type for a precision name such as "Q4_K_M" (any case)."""
    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{precision.upper()}", None)
    if value is None:
        raise ValueError(f"llama.cpp has no file type {precision!r}")
    return int(value)


def model_name(precision: str) -> str:
    """The name the mesh serves a precision under, e.g. "smollm2-q4_k_m"."""
    return f"smollm2-{precision.lower()}"


def precision_of(path: str | Path) -> str:
    """The precision in a GGUF file's name: "SmolLM2-135M-Instruct.Q4_1.gguf" -> "Q4_1"."""
    stem = Path(path).name.removesuffix(".gguf")
    _, dot, precision = stem.rpartition(".")
    if not dot or precision.upper() not in PRECISIONS:
        raise ValueError(f"no precision in the file name {Path(path).name!r}")
    return precision.upper()


def output_path(source: str | Path, precision: str, out_dir: str | Path) -> Path:
    """Where the source model at another precision goes: its name with that precision."""
    base = Path(source).name.removesuffix(".gguf").rpartition(".")[0]
    return Path(out_dir) / f"{base}.{precision.upper()}.gguf"


def fallback_tensors(log: str) -> int:
    """How many tensors llama.cpp wrote in another type than asked, from its quantize log.

    K-quants pack rows in blocks of 256 weights; SmolLM2's 576-wide rows do not divide, so
    those tensors fall back to a 32-weight type (often a wider one)."""
    found = _FALLBACK.search(log)
    return int(found.group(1)) if found else 0


def repacked_bytes(log: str) -> int:
    """How much of the weights llama.cpp's CPU backend copied at load into an interleaved
    layout its matrix kernels read faster (Q4_0 and some k-quant tensors), from its load log.
    The copy is the process's own memory, on top of the memory-mapped file."""
    return round(sum(float(mib) for mib in _REPACK.findall(log)) * 2**20)


@dataclass(frozen=True)
class Quantized:
    """One precision's GGUF file and how it came to be."""

    precision: str
    path: Path
    origin: str  # "shipped" (the source itself), "quantized" now, or "reused" from a past run
    seconds: float
    fallback_tensors: int

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@contextlib.contextmanager
def _llama_log() -> Iterator[io.StringIO]:
    """llama.cpp's log, collected instead of shown: quantizing logs a line per tensor.

    llama-cpp-python prints llama.cpp's log to sys.stderr when its logger's level allows."""
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        logger.setLevel(level)


def _reusable(out: Path, source: Path) -> dict | None:
    """The record of an earlier run's file, when it was made from this same source and is whole."""
    try:
        record = json.loads(out.with_suffix(".json").read_text())
        whole = out.stat().st_size == record["bytes"]
    except (OSError, ValueError, KeyError):
        return None
    same = record.get("source") == source.name and record.get("source_bytes") == (
        source.stat().st_size
    )
    return record if whole and same else None


def quantize(
    source: str | Path, precision: str, out_dir: str | Path, threads: int = 2
) -> Quantized:
    """The source GGUF at `precision`, written by llama.cpp's quantize API into `out_dir`.

    The source's own precision is the source file itself. A file an earlier run made from the
    same source is reused. llama.cpp refuses to re-quantize an already quantized model unless
    told to: it dequantizes each tensor and quantizes it again, which loses more."""
    source, precision = Path(source), precision.upper()
    if precision == precision_of(source):
        return Quantized(precision, source, "shipped", 0.0, 0)
    out = output_path(source, precision, out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if (record := _reusable(out, source)) is not None:
        return Quantized(precision, out, "reused", 0.0, record["fallback_tensors"])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype(precision)
    params.allow_requantize = True
    params.nthread = threads
    partial = out.with_suffix(".part")  # renamed when whole, so a killed run leaves no bad file
    started = time.perf_counter()
    with _llama_log() as log:
        code = llama_cpp.llama_model_quantize(
            str(source).encode(), str(partial).encode(), ctypes.byref(params)
        )
    seconds = time.perf_counter() - started
    out.with_suffix(".log").write_text(log.getvalue())
    if code != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"quantizing to {precision} failed ({code}); see {out.with_suffix('.log')}"
        )
    partial.replace(out)
    fallbacks = fallback_tensors(log.getvalue())
    record = {"source": source.name, "source_bytes": source.stat().st_size}
    record |= {"bytes": out.stat().st_size, "fallback_tensors": fallbacks}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return Quantized(precision, out, "quantized", seconds, fallbacks)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis; the max is taken out first so exp cannot overflow."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def token_nll(logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """Each token's negative log-likelihood given the tokens before it, from the second on:
    row i of `logits` is the model's prediction after reading tokens 0..i."""
    if len(tokens) < 2:
        raise ValueError("perplexity needs at least two tokens")
    if len(logits) < len(tokens) - 1:
        raise ValueError(f"{len(logits)} rows of logits for {len(tokens)} tokens")
    logp = log_softmax(np.asarray(logits[: len(tokens) - 1], dtype=np.float64))
    return -logp[np.arange(len(tokens) - 1), np.asarray(tokens[1:])]


def perplexity_from_nll(nll: np.ndarray | Sequence[float]) -> float:
    """exp of the mean negative log-likelihood: the number of equally likely tokens the model
    was, on average, choosing between."""
    return float(math.exp(float(np.mean(nll))))


@dataclass(frozen=True)
class Perplexity:
    value: float
    tokens: int  # tokens scored: all but the first, which has nothing before it
    seconds: float
    repacked_bytes: int  # see repacked_bytes(); read from the same load


def perplexity(
    model_path: str | Path,
    text: str = TEXT,
    max_tokens: int | None = None,
    n_ctx: int = 512,
    threads: int = 2,
) -> Perplexity:
    """The model's perplexity on `text` (its first `max_tokens` tokens), in one forward pass
    that keeps the logits of every position."""
    started = time.perf_counter()
    # Verbose, into a buffer: the load log tells how much of the weights were repacked.
    with _llama_log() as log:
        llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_threads=threads,
            logits_all=True,
            verbose=True,
        )
        try:
            # No BOS: SmolLM2's tokenizer adds none (tokenizer.ggml.add_bos_token = false).
            tokens = llm.tokenize(text.encode(), add_bos=False)[:max_tokens]
            if len(tokens) > n_ctx:
                raise ValueError(f"{len(tokens)} tokens do not fit n_ctx {n_ctx}")
            llm.eval(tokens)
            logits = np.array(llm.scores[: len(tokens)])
        finally:
            llm.close()
    nll = token_nll(logits, tokens)
    seconds = time.perf_counter() - started
    return Perplexity(perplexity_from_nll(nll), len(nll), seconds, repacked_bytes(log.getvalue()))
