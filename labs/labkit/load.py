"""Unary calls at a chosen concurrency: their latencies and the throughput they reach."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from servemesh.bench.stats import percentiles


@dataclass(frozen=True)
class LoadResult:
    """What `n` calls at `concurrency` saw."""

    concurrency: int
    latencies_s: tuple[float, ...]
    duration_s: float

    @property
    def throughput(self) -> float:
        """Calls completed a second."""
        return len(self.latencies_s) / self.duration_s

    def latency_ms(self) -> dict[str, float]:
        """mean, p50, p90, p99 in milliseconds."""
        summary = percentiles(list(self.latencies_s))
        assert summary is not None, "no calls were made"
        return summary

    def row(self) -> dict[str, float]:
        ms = self.latency_ms()
        return {
            "concurrency": self.concurrency,
            "throughput": round(self.throughput, 2),
            "p50_ms": round(ms["p50"], 1),
            "p99_ms": round(ms["p99"], 1),
        }


async def measure(
    call: Callable[[Any], Awaitable[object]],
    items: Sequence[Any],
    concurrency: int,
    label: str = "",
) -> LoadResult:
    """Calls `call(item)` for every item, at most `concurrency` at once, with progress."""
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(item: Any) -> None:
        async with limit:
            started = time.perf_counter()
            await call(item)
            latencies.append(time.perf_counter() - started)
            print(f"\r{label} {len(latencies)}/{len(items)}", end="", file=sys.stderr, flush=True)

    started = time.perf_counter()
    await asyncio.gather(*(one(item) for item in items))
    duration = time.perf_counter() - started
    print(file=sys.stderr)
    return LoadResult(concurrency, tuple(latencies), duration)
