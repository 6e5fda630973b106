"""A soak through the gateway at concurrency 64: a mix of streams, unary generations,
embeddings and model listings. Nothing fails that the limits do not refuse, and the gateway's
memory stays flat. `pytest --soak-requests 10000` runs the long version."""

from __future__ import annotations

import asyncio
import collections
import random

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
                async for _ in client.predict_stream(MODEL, prompt, max_tokens=8):
                    pass
            elif kind == "unary":
                await client.predict(MODEL, prompt, max_tokens=4)
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
