"""Summaries of a benchmark run: latency percentiles, throughput, goodput, errors."""

from __future__ import annotations

import collections
import statistics
from typing import Any

from servemesh.bench.runner import RequestResult


def percentiles(values: list[float]) -> dict[str, float] | None:
    """Mean, p50, p90 and p99 of `values` (seconds) in milliseconds; None when empty."""
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {
        "mean": statistics.fmean(ordered) * 1000,
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
    }


def summarize(
    results: list[RequestResult],
    duration: float,
    ttft_slo_ms: float | None = None,
    tpot_slo_ms: float | None = None,
) -> dict[str, Any]:
    """Latencies in milliseconds, rates per second."""
    ok = [r for r in results if r.error is None]
    output = sum(r.output_tokens for r in ok)

    def good(r: RequestResult) -> bool:
        ttft_ok = ttft_slo_ms is None or (r.ttft is not None and r.ttft * 1000 <= ttft_slo_ms)
        tpot_ok = tpot_slo_ms is None or r.tpot is None or r.tpot * 1000 <= tpot_slo_ms
        return ttft_ok and tpot_ok

    return {
        "requests": len(results),
        "completed": len(ok),
        "errors": dict(collections.Counter(r.error for r in results if r.error)),
        "duration_s": duration,
        "request_throughput": len(ok) / duration,
        "output_tokens": output,
        "output_tok_s": output / duration,
        "goodput_req_s": sum(good(r) for r in ok) / duration,
        "ttft_ms": percentiles([r.ttft for r in ok if r.ttft is not None]),
        "tpot_ms": percentiles([r.tpot for r in ok if r.tpot is not None]),
        "itl_ms": percentiles([x for r in ok for x in r.itls]),
        "e2e_ms": percentiles([r.e2e for r in ok]),
    }
