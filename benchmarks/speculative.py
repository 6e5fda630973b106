"""Speculative decoding by prompt lookup: servemesh with and without drafts, against llama.cpp's
llama-server with and without its n-gram speculative decoding, in one run.

Two workloads of chat prompts, one stream, greedy: `edit`, where the answer rewrites a
paragraph the prompt gives (drafts should hit), and `free`, open questions whose answers do
not repeat the prompt (drafts should mostly miss). Every system runs in alternating rounds
(`--rounds`), so this machine's drift in speed falls on all alike. Prints the table, the
ratios against their baselines from the same run, how many outputs were the same with and
without drafts, and writes JSON. Runs in the bench environment (`make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request
from pathlib import Path
from typing import Any

from llm_serving import MODEL, free_port, llama_server, start_server

from servemesh.aio import AsyncClient
from servemesh.bench.report import Row, write_json
from servemesh.bench.runner import alternating, run
from servemesh.bench.stats import summarize
from servemesh.bench.targets import OpenAITarget, ServemeshTarget, Target
from servemesh.bench.workload import BenchRequest

ROOT = Path(__file__).resolve().parents[1]
PLAIN = "servemesh"
DRAFTED = "servemesh, prompt lookup"
LLAMA_SERVER = "llama-server"
LLAMA_SERVER_NGRAM = "llama-server, ngram-simple"

PARAGRAPHS = [
    (
        "river",
        "stream",
        "The river starts high in the mountains, where snow melts every spring and feeds a "
        "hundred small streams. They join in the valley, and the water grows wide and slow. "
        "Farmers along its banks have grown wheat and barley there for centuries, and the old "
        "mill still turns when the water is high.",
    ),
    (
        "Monday",
        "Tuesday",
        "Our team meets every Monday at nine to plan the week. Each person says what they "
        "finished, what they will do next, and what is blocking them. The meeting lasts "
        "fifteen minutes, and the notes go to the shared folder before lunch.",
    ),
    (
        "bakery",
        "cafe",
        "The bakery on the corner opens at six. By seven there is a line of people waiting for "
        "fresh bread, and by noon the shelves are almost empty. The owner bakes everything "
        "herself, and she has never missed a morning in twenty years.",
    ),
    (
        "train",
        "bus",
        "The train leaves the city at eight in the morning and reaches the coast by noon. On "
        "the way it passes through small towns, green fields and a long tunnel under the "
        "hills. Most passengers read or sleep, but children always watch the sea appear.",
    ),
]
QUESTIONS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue to a ten-year-old.",
    "Give five tips for staying focused while working from home.",
    "Describe a walk through a forest in autumn.",
]


def chat(text: str) -> str:
    """The model's chat template, written out: every system gets the same raw prompt."""
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def workloads(max_tokens: int) -> dict[str, list[BenchRequest]]:
    edit = [
        chat(
            f"Rewrite the following paragraph, replacing the word '{old}' with '{new}'. Keep "
            f"everything else exactly the same.\n\n{paragraph}"
        )
        for old, new, paragraph in PARAGRAPHS
    ]
    free = [chat(question) for question in QUESTIONS]
    return {
        "edit": [BenchRequest(p, max_tokens) for p in edit],
        "free": [BenchRequest(p, max_tokens) for p in free],
    }


def llama_server_ngram(binary: str, threads: int, port: int, args: argparse.Namespace) -> list[str]:
    return [
        *llama_server(binary, threads, 1, port),
        "--spec-type",
        "ngram-simple",
        "--spec-ngram-simple-size-n",
        str(args.ngram),
        "--spec-ngram-simple-size-m",
        str(args.draft_tokens),
        "--spec-draft-n-max",
        str(args.draft_tokens),
    ]


def draft_counts(metrics_url: str) -> tuple[float, float]:
    """The predictor's drafted and accepted token counters, or zeros where unreadable."""
    try:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    except OSError:
        return 0.0, 0.0
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "servemesh_llama_draft_tokens_total",
            "servemesh_llama_accepted_draft_tokens_total",
        ):
            values[name] = float(value)
    return (
        values.get("servemesh_llama_draft_tokens_total", 0.0),
        values.get("servemesh_llama_accepted_draft_tokens_total", 0.0),
    )


async def same_outputs(args: argparse.Namespace, requests: list[BenchRequest]) -> int:
    """How many prompts give the same text with drafts as without."""
    same = 0
    async with AsyncClient(args.gateway, timeout=None) as client:
        for request in requests:
            texts = []
            for draft in (0, args.draft_tokens):
                result = await client.predict(
                    MODEL,
                    prompt=request.prompt,
                    max_tokens=request.max_tokens,
                    temperature=0,
                    draft_tokens=draft,
                )
                texts.append(result.text)
            same += texts[0] == texts[1]
    return same


async def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    targets: list[Target] = [
        ServemeshTarget(args.gateway, MODEL, PLAIN, parameters={"draft_tokens": 0}),
        ServemeshTarget(
            args.gateway, MODEL, DRAFTED, parameters={"draft_tokens": args.draft_tokens}
        ),
    ]
    servers = []
    if args.llama_server:
        for name, command in (
            (LLAMA_SERVER, lambda port: llama_server(args.llama_server, args.threads, 1, port)),
            (
                LLAMA_SERVER_NGRAM,
                lambda port: llama_server_ngram(args.llama_server, args.threads, port, args),
            ),
        ):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log = args.out.parent / f"{name.replace(', ', '_').replace('-', '_')}.log"
            servers.append(start_server(command(port), f"{url}/health", log))
            targets.append(OpenAITarget(url, MODEL, name))
    rows: list[Row] = []
    extra: dict[str, Any] = {"acceptance": {}, "same_outputs": {}}
    try:
        warm_up = BenchRequest(chat("Say hello."), 8)
        for target in targets:  # a first request pays for loading; no round should
            await run(target, [warm_up], 1, None, 0, f"warm-up: {target.name}")
        for workload, requests in workloads(args.max_tokens).items():
            runs: dict[str, list[tuple[list[Any], float]]] = {t.name: [] for t in targets}
            for round_, target in alternating(targets, args.rounds):
                before = draft_counts(args.predictor_metrics) if target.name == DRAFTED else None
                label = f"{workload}: {target.name} round {round_ + 1}/{args.rounds}"
                runs[target.name].append(await run(target, requests, 1, None, 0, label))
                if before is not None:
                    after = draft_counts(args.predictor_metrics)
                    drafted, accepted = (a - b for a, b in zip(after, before, strict=True))
                    tally = extra["acceptance"].setdefault(workload, [0.0, 0.0])
                    tally[0] += drafted
                    tally[1] += accepted
            print(file=sys.stderr)
            for name, rounds_run in runs.items():
                pooled = [r for results, _ in rounds_run for r in results]
                summary = summarize(pooled, sum(duration for _, duration in rounds_run))
                summary["workload"] = workload
                rows.append((f"{name} [{workload}]", 1, summary))
            same = await same_outputs(args, requests)
            extra["same_outputs"][workload] = f"{same}/{len(requests)}"
    finally:
        for target in targets:
            await target.close()
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    return rows, extra


def ratios(rows: list[Row]) -> list[str]:
    tok_s = {name: s["output_tok_s"] for name, _, s in rows}
    lines = []
    for workload, target in (("edit", 1.5), ("free", 0.95)):
        ours, base = tok_s.get(f"{DRAFTED} [{workload}]"), tok_s.get(f"{PLAIN} [{workload}]")
        if ours and base:
            lines.append(
                f"{workload}: prompt lookup / servemesh without drafts x{ours / base:.2f} "
                f"(target >= {target})"
            )
        theirs = tok_s.get(f"{LLAMA_SERVER_NGRAM} [{workload}]")
        plain = tok_s.get(f"{LLAMA_SERVER} [{workload}]")
        if ours and theirs:
            lines.append(
                f"{workload}: prompt lookup / llama-server ngram-simple x{ours / theirs:.2f}"
                + (" (target >= 1.0)" if workload == "edit" else "")
            )
        if theirs and plain:
            lines.append(
                f"{workload}: llama-server ngram-simple / llama-server x{theirs / plain:.2f}"
            )
    return lines


def table(rows: list[Row], extra: dict[str, Any]) -> str:
    lines = [
        f"{'system [workload]':38} {'req':>4} {'out tok/s':>10} {'TTFT p50':>9} {'accepted':>9}"
    ]
    for name, _, s in rows:
        accepted = "-"
        if name.startswith(DRAFTED):
            drafted, kept = extra["acceptance"].get(s["workload"], (0.0, 0.0))
            accepted = f"{kept / drafted:.0%}" if drafted else "0"
        ttft = s["ttft_ms"]["p50"] if s["ttft_ms"] else 0
        lines.append(
            f"{name:38} {s['completed']:>4} {s['output_tok_s']:>10.1f} {ttft:>9.0f} {accepted:>9}"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateway", default="localhost:50051")
    p.add_argument(
        "--predictor-metrics",
        default="http://localhost:9161/metrics",
        help="the predictor's metrics, for the share of drafts accepted",
    )
    p.add_argument("--llama-server", default="", help="llama-server binary; empty skips it")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--draft-tokens", type=int, default=8)
    p.add_argument("--ngram", type=int, default=3, help="llama-server's lookup n-gram size")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "run" / "bench" / "speculative.json")
    args = p.parse_args()
    rows, extra = asyncio.run(measure(args))
    print(table(rows, extra))
    print("\n".join(["", *ratios(rows)]))
    print(f"same output with and without drafts: {extra['same_outputs']}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_json(args.out, rows, settings | extra | {"ratios": ratios(rows)})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
