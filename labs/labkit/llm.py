"""LLM serving measurements through servemesh.bench: a concurrency sweep, one row a level."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servemesh.bench.runner import run
from servemesh.bench.stats import summarize
from servemesh.bench.targets import ServemeshTarget
from servemesh.bench.workload import Workload


@dataclass(frozen=True)
class Slo:
    """A service level objective: a request is good when both hold."""

    ttft_ms: float
    tpot_ms: float


async def sweep(
    address: str,
    model: str,
    concurrency: list[int],
    workload: Workload,
    slo: Slo | None = None,
    label: str = "",
) -> list[dict[str, Any]]:
    """The workload at each concurrency level in turn; one summary (servemesh.bench.stats)
    per level, with its concurrency, and the per-request results under "results"."""
    target = ServemeshTarget(address, model)
    requests = workload.requests()
    rows = []
    try:
        # One short request first: the first call pays for the connection, not the model.
        await run(target, requests[:1], 1, None, label=f"{label} warm-up")
        for c in concurrency:
            results, duration = await run(target, requests, c, None, label=f"{label} c={c}")
            summary = summarize(
                results, duration, slo.ttft_ms if slo else None, slo.tpot_ms if slo else None
            )
            rows.append({"concurrency": c, **summary, "results": results})
    finally:
        await target.close()
    return rows


def headline(row: dict[str, Any]) -> dict[str, Any]:
    """A sweep row without its per-request results, rounded, for a lab's JSON."""
    keep = {k: v for k, v in row.items() if k != "results"}
    for key, value in keep.items():
        if isinstance(value, float):
            keep[key] = round(value, 2)
        elif isinstance(value, dict):
            keep[key] = {k: round(v, 1) if isinstance(v, float) else v for k, v in value.items()}
    return keep
