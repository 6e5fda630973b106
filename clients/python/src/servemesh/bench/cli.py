"""The `servemesh bench` subcommand."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from servemesh.bench.report import Row, plot_sweep, table, write_json
from servemesh.bench.runner import run
from servemesh.bench.stats import summarize
from servemesh.bench.targets import make_target
from servemesh.bench.workload import Workload


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(":")
    return int(low), int(high or low)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bench", help="measure a serving target (TTFT, TPOT, throughput)")
    p.add_argument(
        "--url",
        action="append",
        required=True,
        help="grpc://HOST:PORT (servemesh) or http://HOST:PORT (OpenAI-compatible); "
        "repeat to compare systems on the same prompts",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--input-len", type=_range, default=(32, 32), help="words, N or MIN:MAX")
    p.add_argument("--output-len", type=_range, default=(128, 128), help="tokens, N or MIN:MAX")
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1],
        help="levels to sweep; each runs the whole workload",
    )
    p.add_argument("--request-rate", type=float, help="Poisson arrivals a second (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", type=Path, help='JSONL with a "prompt" field per line')
    p.add_argument("--ttft-slo-ms", type=float, help="goodput counts requests within it")
    p.add_argument("--tpot-slo-ms", type=float)
    p.add_argument("--out", type=Path, default=Path("bench.json"))
    p.add_argument("--plot", type=Path, help="PNG of the concurrency sweep")
    p.set_defaults(run_bench=main)


async def sweep(args: argparse.Namespace, client_options: dict[str, Any]) -> list[Row]:
    workload = Workload(args.num_prompts, args.input_len, args.output_len, args.seed, args.dataset)
    requests = workload.requests()
    rows: list[Row] = []
    for url in args.url:
        target = make_target(url, args.model, url, **client_options)
        try:
            for concurrency in args.concurrency:
                results, duration = await run(
                    target,
                    requests,
                    concurrency,
                    args.request_rate,
                    args.seed,
                    f"{url} c={concurrency}",
                )
                summary = summarize(results, duration, args.ttft_slo_ms, args.tpot_slo_ms)
                rows.append((url, concurrency, summary))
        finally:
            await target.close()
    return rows


def main(args: argparse.Namespace, client_options: dict[str, Any]) -> int:
    """Runs the sweep; `client_options` are the SDK client's (API key, TLS) for grpc:// URLs."""
    rows = asyncio.run(sweep(args, client_options))
    print(table(rows, baseline=args.url[0] if len(args.url) > 1 else None))
    settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        # The report is meant to be shared: the API key stays out of it.
        if k not in ("run_bench", "run", "api_key")
    }
    write_json(args.out, rows, settings)
    print(f"wrote {args.out}")
    if args.plot:
        plot_sweep(args.plot, rows, f"{args.model}, {args.num_prompts} prompts")
        print(f"wrote {args.plot}")
    failed = sum(sum(s["errors"].values()) for _, _, s in rows)
    return 1 if failed else 0
