"""Unary calls as benchmark targets: requests/s and latency percentiles of any awaitable call,
for comparing systems that answer the same request in alternating rounds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from servemesh.bench.runner import run
from servemesh.bench.stats import summarize
from servemesh.bench.workload import BenchRequest

Call = Callable[[], Awaitable[object]]


class UnaryTarget:
    """A unary call as a bench target: one result a request, its whole latency the e2e."""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def stream(self, request: BenchRequest) -> AsyncIterator[int]:
        await self._call()
        yield 1

    async def close(self) -> None:
        pass


async def measure(call: Call, requests: int, concurrency: int, label: str = "") -> dict[str, Any]:
    """Requests/s and latency percentiles (ms) of `requests` calls, `concurrency` at once.
    A failed call ends the benchmark: a figure that mixes in errors would mislead."""
    results, duration = await run(
        UnaryTarget(call), [BenchRequest("", 1)] * requests, concurrency, None, label=label
    )
    summary = summarize(results, duration)
    if summary["errors"]:
        raise SystemExit(f"{label}: calls failed: {summary['errors']}")
    return {"requests_per_s": summary["request_throughput"], "latency_ms": summary["e2e_ms"]}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, whole (its latencies belong to it), and every
    round's throughput."""
    ordered = sorted(runs, key=lambda r: r["requests_per_s"])
    return ordered[len(ordered) // 2] | {
        "rounds_requests_per_s": [r["requests_per_s"] for r in runs]
    }
