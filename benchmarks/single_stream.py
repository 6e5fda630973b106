"""One stream, three ways: raw llama-cpp-python in-process, the predictor, and the gateway.

Same model, threads, prompt and max_tokens (greedy, so the same tokens). Prints TTFT and
decode tokens/s (median of the runs) and each one's ratio to raw llama-cpp-python, and writes
the numbers to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from servemesh import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictors.llama.settings import DEFAULT_MODEL_NAME, default_model_path  # noqa: E402

PROMPT = (
    "Here is a long list of the numbers from one to two hundred, written as digits and "
    "separated by commas: 1, 2, 3,"
)


def measure(stream: Callable[[], Iterator[int]]) -> dict[str, float]:
    """TTFT and decode rate of one stream that yields token counts as they arrive."""
    started = time.perf_counter()
    first = last = started
    tokens = 0
    for count in stream():
        now = time.perf_counter()
        if tokens == 0:
            first = now
        tokens += count
        last = now
    return {
        "ttft_ms": (first - started) * 1000,
        "decode_tok_s": (tokens - 1) / (last - first) if last > first else 0.0,
        "tokens": tokens,
    }


def raw_stream(max_tokens: int, threads: int) -> Callable[[], Iterator[int]]:
    from llama_cpp import Llama

    llm = Llama(default_model_path(), n_ctx=2048, n_threads=threads, verbose=False)

    def stream() -> Iterator[int]:
        llm.reset()  # the predictor prefills every prompt in full; so does the baseline
        for _ in llm.create_completion(PROMPT, max_tokens=max_tokens, temperature=0, stream=True):
            yield 1

    return stream


def servemesh_stream(target: str, max_tokens: int) -> Callable[[], Iterator[int]]:
    client = Client(target)

    def stream() -> Iterator[int]:
        for chunk in client.predict_stream(
            DEFAULT_MODEL_NAME, PROMPT, max_tokens=max_tokens, temperature=0
        ):
            if chunk.token_count:
                yield chunk.token_count

    return stream


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateway", default="localhost:50051")
    p.add_argument("--predictor", default="localhost:50061")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "run" / "bench" / "single_stream.json")
    a = p.parse_args()
    systems = {
        "llama-cpp-python (in-process)": raw_stream(a.max_tokens, a.threads),
        "servemesh predictor": servemesh_stream(a.predictor, a.max_tokens),
        "servemesh gateway -> predictor": servemesh_stream(a.gateway, a.max_tokens),
    }
    results: dict[str, dict[str, float]] = {}
    for name, stream in systems.items():
        measure(stream)  # warm-up
        runs = []
        for i in range(a.runs):
            runs.append(measure(stream))
            print(f"\r{name}: run {i + 1}/{a.runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    base = results["llama-cpp-python (in-process)"]
    print(f"\none stream, {a.max_tokens} tokens, greedy, {a.threads} threads, median of {a.runs}")
    print(f"{'system':32} {'TTFT ms':>9} {'decode tok/s':>13} {'x raw tok/s':>12} {'TTFT +ms':>9}")
    for name, r in results.items():
        ratio = r["decode_tok_s"] / base["decode_tok_s"]
        extra_ttft = r["ttft_ms"] - base["ttft_ms"]
        print(
            f"{name:32} {r['ttft_ms']:9.1f} {r['decode_tok_s']:13.1f} {ratio:12.2f} "
            f"{extra_ttft:9.1f}"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps({"settings": vars(a) | {"out": str(a.out)}, "results": results}, indent=2)
    )
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
