"""Runs a workload against a target and records what each request saw."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from servemesh.bench.targets import Target
from servemesh.bench.workload import BenchRequest, arrival_delays
from servemesh.errors import ServemeshError

T = TypeVar("T")


@dataclass
class RequestResult:
    """Timings of one request: when tokens arrived, relative to its start."""

    ttft: float | None = None
    token_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    e2e: float = 0.0
    error: str | None = None

    @property
    def itls(self) -> list[float]:
        """Inter-token latencies: the gaps between arrivals."""
        t = self.token_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


async def _one(target: Target, request: BenchRequest) -> RequestResult:
    result = RequestResult()
    started = time.perf_counter()
    try:
        async for count in target.stream(request):
            now = time.perf_counter() - started
            if result.ttft is None:
                result.ttft = now
            result.token_times.append(now)
            result.output_tokens += count
    except ServemeshError as error:
        result.error = error.code.name
    except Exception as error:  # an HTTP baseline's failure, by its kind
        result.error = type(error).__name__
    result.e2e = time.perf_counter() - started
    return result


async def run(
    target: Target,
    requests: list[BenchRequest],
    concurrency: int | None,
    request_rate: float | None,
    seed: int = 0,
    label: str = "",
) -> tuple[list[RequestResult], float]:
    """All requests, at most `concurrency` at once, arriving at `request_rate` a second
    (Poisson) or all together. Returns the results and the wall time."""
    limit = asyncio.Semaphore(concurrency or len(requests))
    done = 0

    async def limited(request: BenchRequest) -> RequestResult:
        nonlocal done
        async with limit:
            result = await _one(target, request)
        done += 1
        print(f"\r{label} {done}/{len(requests)} requests", end="", file=sys.stderr, flush=True)
        return result

    started = time.perf_counter()
    tasks = []
    for request, delay in zip(
        requests, arrival_delays(len(requests), request_rate, seed), strict=True
    ):
        await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(limited(request)))
    results = await asyncio.gather(*tasks)
    print(file=sys.stderr)
    return list(results), time.perf_counter() - started


def alternating(systems: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, system) in the order A B, B A, A B, ...: a drift of the machine's speed
    during a comparison then falls on every system alike."""
    for round_ in range(rounds):
        for system in systems if round_ % 2 == 0 else systems[::-1]:
            yield round_, system
