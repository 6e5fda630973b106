"""A soak through the gateway at concurrency 64: a mix of streams, unary generations,
embeddings and model listings. Nothing fails that the limits do not refuse, and the gateway's
memory stays flat. `pytest --soak-requests 10000` runs the long version."""

from __future__ import annotations

import asyncio
import collections
import random
import statistics

import psutil
import pytest

from servemesh import AsyncClient
from servemesh.errors import ServemeshError
from tests.servers import MODEL, PROMPTS, wait_for

CONCURRENCY = 64
ACTIVE = "servemesh_llama_active_sequences"


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the 10,000-request version takes about 12 minutes here
async def test_soak_at_concurrency_64(mesh, soak_requests: int) -> None:
    rng = random.Random(0)
    gateway = psutil.Process(mesh.gateway.process.pid)
    errors: collections.Counter[str] = collections.Counter()
    done = 0
    rss: list[int] = []  # the gateway's resident memory at the end of each quarter
    quarter = soak_requests // 4

    async with AsyncClient(mesh.gateway.address, timeout=120) as client:

        async def one(i: int) -> None:
            prompt = PROMPTS[i % len(PROMPTS)]
            kind = rng.choice(["stream", "stream", "unary", "embedding", "models"])
            if kind == "stream":
                async for _ in client.predict_stream(MODEL, prompt=prompt, max_tokens=8):
                    pass
            elif kind == "unary":
                await client.predict(MODEL, prompt=prompt, max_tokens=4)
            elif kind == "embedding":
                await client.predict("all-minilm-l6-v2", inputs={"text": prompt})
            else:
                await client.list_models()

        async def worker(queue: asyncio.Queue[int]) -> None:
            nonlocal done
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    await one(i)
                except ServemeshError as error:
                    errors[error.code.name] += 1
                done += 1
                if done % quarter == 0:
                    rss.append(gateway.memory_info().rss)
                    print(f"soak: {done}/{soak_requests} requests, gateway RSS {rss[-1] >> 20} MiB")

        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(soak_requests):
            queue.put_nowait(i)
        await asyncio.gather(*(worker(queue) for _ in range(CONCURRENCY)))

    growth = rss[-1] / rss[0] - 1
    print(
        f"soak: {soak_requests} requests, errors {dict(errors) or 'none'}, gateway RSS "
        f"{[r >> 20 for r in rss]} MiB by quarter, growth {growth:+.1%}"
    )
    # The predictor queues 64 and the gateway has no limit configured here: nothing may fail.
    assert not errors, errors
    assert growth < 0.10, f"gateway RSS grew {growth:.1%} from the first to the last quarter"
    await asyncio.to_thread(wait_for, lambda: mesh.metrics.get(ACTIVE) == 0, 10, "all finished")


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_unary_calls_leave_the_gateways_memory_flat(mesh, soak_unary_calls: int) -> None:
    """Calls that all succeed, as on a healthy backend: each used to leave a timestamp in the
    retry budget for good (100,000 calls, about 3 MB, +9.6 % RSS). After a warm-up of a tenth
    of the calls, the gateway's RSS may grow less than 5 %."""
    gateway = psutil.Process(mesh.gateway.process.pid)

    async def run(calls: int) -> None:
        async with AsyncClient(mesh.gateway.address, timeout=60) as client:
            left = calls

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await client.get_model(MODEL)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    await run(soak_unary_calls // 10)
    before = gateway.memory_info().rss
    # RSS moves up and down by a few MB as the allocator's arenas fill and empty (measured:
    # 51 to 54 MB within one run); a leak is a trend. The growth is the least-squares line
    # through 20 samples, over the whole run.
    chunks = 20
    rss = []
    for _ in range(chunks):
        await run(soak_unary_calls // chunks)
        rss.append(gateway.memory_info().rss)
    slope = statistics.linear_regression(range(chunks), rss).slope
    growth = slope * (chunks - 1) / before
    print(
        f"unary soak: {soak_unary_calls} GetModel calls after the warm-up, gateway RSS "
        f"{before >> 20} MiB, then {[r >> 20 for r in rss]} MiB, trend {growth:+.1%}"
    )
    assert growth < 0.05, f"gateway RSS grew {growth:.1%} over {soak_unary_calls} calls"
