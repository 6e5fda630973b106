"""Shows benchmark summaries: a table, a JSON file, and a PNG of a concurrency sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Row = tuple[str, int, dict[str, Any]]  # system, concurrency, summary


def _ms(summary: dict[str, Any], metric: str, stat: str) -> str:
    values = summary.get(metric)
    return f"{values[stat]:.0f}" if values else "-"


def table(rows: list[Row], baseline: str | None = None) -> str:
    """One line per (system, concurrency); `x base` is output tok/s over the baseline's."""
    base = {c: s["output_tok_s"] for name, c, s in rows if name == baseline}
    lines = [
        f"{'system':34} {'conc':>4} {'req':>5} {'err':>4} {'out tok/s':>10} {'x base':>7} "
        f"{'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9} {'ITL p50':>8} {'goodput':>8}"
    ]
    for name, concurrency, s in rows:
        ratio = s["output_tok_s"] / base[concurrency] if base.get(concurrency) else None
        lines.append(
            f"{name:34} {concurrency:>4} {s['completed']:>5} {sum(s['errors'].values()):>4} "
            f"{s['output_tok_s']:>10.1f} {f'{ratio:.2f}' if ratio else '-':>7} "
            f"{_ms(s, 'ttft_ms', 'p50'):>9} {_ms(s, 'ttft_ms', 'p99'):>9} "
            f"{_ms(s, 'tpot_ms', 'p50'):>9} {_ms(s, 'itl_ms', 'p50'):>8} "
            f"{s['goodput_req_s']:>8.2f}"
        )
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [{"system": n, "concurrency": c, **s} for n, c, s in rows]
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=2))


def plot_sweep(path: Path, rows: list[Row], title: str) -> None:
    """Output tok/s and TTFT p50 against concurrency, one line per system."""
    import matplotlib  # the bench extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (throughput, ttft) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(n for n, _, _ in rows):
        points = sorted((c, s) for n, c, s in rows if n == name)
        xs = [c for c, _ in points]
        throughput.plot(xs, [s["output_tok_s"] for _, s in points], marker="o", label=name)
        ttft.plot(
            xs,
            [s["ttft_ms"]["p50"] if s["ttft_ms"] else None for _, s in points],
            marker="o",
            label=name,
        )
    throughput.set(
        xlabel="concurrent streams",
        ylabel="output tokens/s (aggregate)",
        xscale="log",
        title="Throughput",
    )
    ttft.set(
        xlabel="concurrent streams",
        ylabel="TTFT p50 (ms)",
        xscale="log",
        yscale="log",
        title="Time to first token",
    )
    for axes in (throughput, ttft):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
