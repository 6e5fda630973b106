"""Continuous batching in the llama predictor: many streams in one batch, each its own."""

from __future__ import annotations

import asyncio

from servemesh import AsyncClient
from tests.servers import MODEL, PROMPTS, wait_for

ACTIVE = "servemesh_llama_active_sequences"
KV = "servemesh_llama_kv_used_tokens"


async def _text(client: AsyncClient, prompt: str, max_tokens: int = 24) -> str:
    parts = []
    async for chunk in client.predict_stream(
        MODEL, prompt=prompt, max_tokens=max_tokens, temperature=0
    ):
        parts.append(chunk.text)
    return "".join(parts)


async def test_greedy_results_in_a_batch_of_8_equal_the_solo_results(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        solo = [await _text(client, p) for p in PROMPTS]
        batched = await asyncio.gather(*(_text(client, p) for p in PROMPTS))
    assert batched == solo


async def test_cancelling_one_stream_frees_it_and_leaves_the_others_intact(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        solo = [await _text(client, p, 40) for p in PROMPTS[:3]]

        async def cancelled_after_three() -> None:
            stream = client.predict_stream(MODEL, prompt=PROMPTS[6], max_tokens=500, temperature=0)
            seen = 0
            async for chunk in stream:
                seen += chunk.token_count
                if seen >= 3:
                    break
            await stream.aclose()

        others = asyncio.gather(*(_text(client, p, 40) for p in PROMPTS[:3]))
        await cancelled_after_three()
        assert await others == solo
    await asyncio.to_thread(wait_for, lambda: mesh.metrics.get(ACTIVE) == 0, 5, "all freed")
    assert mesh.metrics.get(KV) == 0, "every KV cache cell was freed"


async def test_more_requests_than_sequences_queue_and_all_finish(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        results = await asyncio.gather(*(_text(client, PROMPTS[i % 8], 8) for i in range(40)))
    assert all(results)
    assert results[:8] == results[8:16]
