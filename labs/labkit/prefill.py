"""What running streams feel when a long prompt joins the batch: their inter-token gaps while
its prompt is prefilled, against the gaps before."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

from servemesh import AsyncClient

_FILLER = (
    "The committee met on a grey morning to review the river survey. Each station reported "
    "its water level, its temperature and the state of its banks, and the clerk wrote every "
    "figure into the ledger before the next speaker began. "
)


def long_prompt(sentences: int) -> str:
    """A prompt of about 45 tokens a sentence, distinct sentences so nothing repeats exactly."""
    body = "".join(f"Report {i}. {_FILLER}" for i in range(sentences))
    return f"Summarize these meeting notes in one sentence.\n\n{body}\n\nSummary:"


@dataclass(frozen=True)
class JoinResult:
    """Gaps between tokens of the running streams, in ms, split at the long prompt's arrival
    and its first token; and how long the long prompt waited for its first token."""

    gaps_before_ms: tuple[float, ...]
    gaps_during_ms: tuple[float, ...]
    long_ttft_ms: float
    long_prompt_tokens: int


def split_gaps(
    arrivals: list[list[float]], join_at: float, joined_first_token_at: float
) -> tuple[list[float], list[float]]:
    """Each stream's gaps, in ms: those that ended before the join, and those that overlap
    the span from the join to the joined request's first token (its prefill)."""
    before, during = [], []
    for times in arrivals:
        for a, b in itertools.pairwise(times):
            if b <= join_at:
                before.append((b - a) * 1000)
            elif a < joined_first_token_at:
                during.append((b - a) * 1000)
    return before, during


async def long_prompt_joins(
    address: str,
    model: str,
    prompt: str,
    running: int,
    running_tokens: int,
    warm_tokens: int = 8,
) -> JoinResult:
    """Starts `running` greedy streams; once each has `warm_tokens` tokens, sends `prompt`
    and records every stream's token arrival times until all end."""
    arrivals: list[list[float]] = [[] for _ in range(running)]
    async with AsyncClient(address, timeout=None) as client:
        started = time.perf_counter()

        async def stream(i: int) -> None:
            async for chunk in client.predict_stream(
                model,
                prompt=f"Stream {i}: write a long story about a lighthouse keeper.",
                max_tokens=running_tokens,
                temperature=0,
            ):
                if chunk.token_count:
                    arrivals[i].append(time.perf_counter() - started)

        tasks = [asyncio.create_task(stream(i)) for i in range(running)]
        while min(len(a) for a in arrivals) < warm_tokens:
            if any(t.done() for t in tasks):
                break  # a stream ended early; gather() below says why if it failed
            await asyncio.sleep(0.002)
        join_at = time.perf_counter() - started
        first_at, prompt_tokens = None, 0
        async for chunk in client.predict_stream(model, prompt=prompt, max_tokens=4, temperature=0):
            if first_at is None and chunk.token_count:
                first_at = time.perf_counter() - started
            if chunk.usage:
                prompt_tokens = chunk.usage.prompt_tokens
        await asyncio.gather(*tasks)
    assert first_at is not None, "the long prompt produced no token"
    before, during = split_gaps(arrivals, join_at, first_at)
    return JoinResult(tuple(before), tuple(during), (first_at - join_at) * 1000, prompt_tokens)
