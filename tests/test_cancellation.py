"""A client that goes away, or whose deadline passes, stops the work it started."""

from __future__ import annotations

import asyncio
import time

import pytest

from servemesh import AsyncClient, Client, DeadlineExceeded, ResourceExhausted
from tests.servers import MODEL, Metrics, llama_predictor, wait_for

COUNTING = "1, 2, 3, 4, 5, 6, 7,"  # greedy decoding keeps counting for hundreds of tokens
TOKENS = "servemesh_llama_generated_tokens_total"
CANCELLED = "servemesh_llama_generations_finished_total{outcome=cancelled}"
ACTIVE = "servemesh_llama_active_sequences"


async def test_cancelled_stream_stops_generation_within_a_token_or_two(mesh) -> None:
    before = mesh.metrics.settled()
    async with AsyncClient(mesh.gateway.address) as client:
        stream = client.predict_stream(MODEL, prompt=COUNTING, max_tokens=1000, temperature=0)
        received = 0
        async for chunk in stream:
            received += chunk.token_count
            if received >= 5:
                break
        await stream.aclose()
        at_cancel = mesh.metrics.get(TOKENS)
    after = await asyncio.to_thread(mesh.metrics.settled)
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 1
    # Tokens made between the client's cancel and the worker seeing it: the cancel crosses
    # two gRPC hops, so allow for a few 10 ms tokens, far below the 1000 asked for.
    assert after[TOKENS] - at_cancel <= 5, after[TOKENS] - at_cancel
    await asyncio.sleep(0.3)
    assert mesh.metrics.get(TOKENS) == after[TOKENS], "nothing generates after the cancel"


async def test_a_hundred_cancelled_streams_leave_nothing_running(mesh) -> None:
    """Clients that leave mid-generation, some while running and some while still queued
    (50 at once is more than the predictor decodes together), leak no sequence and no queue
    place."""
    before = mesh.metrics.settled()
    async with AsyncClient(mesh.gateway.address) as client:

        async def leave_after(tokens: int) -> None:
            stream = client.predict_stream(MODEL, prompt=COUNTING, max_tokens=1000, temperature=0)
            received = 0
            async for chunk in stream:
                received += chunk.token_count
                if received >= tokens:
                    break
            await stream.aclose()

        for _ in range(2):  # two waves of 50: within the predictor's sequences + queue
            leaving = [asyncio.create_task(leave_after(1 + i % 5)) for i in range(50)]
            await asyncio.gather(*leaving[:25])
            for task in leaving[25:]:  # the rest go by task cancellation, wherever they are
                task.cancel()
            await asyncio.gather(*leaving, return_exceptions=True)
    after = await asyncio.to_thread(mesh.metrics.settled)
    assert after[CANCELLED] - before.get(CANCELLED, 0) == 100
    assert after["servemesh_llama_kv_used_tokens"] == 0


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
def test_deadline_gives_deadline_exceeded_and_stops_the_backend(mesh, streaming: bool) -> None:
    before = mesh.metrics.settled()
    started = time.monotonic()
    with Client(mesh.gateway.address) as client, pytest.raises(DeadlineExceeded):
        if streaming:
            for _ in client.predict_stream(
                MODEL, prompt=COUNTING, max_tokens=1000, temperature=0, timeout=0.5
            ):
                pass
        else:
            client.predict(MODEL, prompt=COUNTING, max_tokens=1000, temperature=0, timeout=0.5)
    assert time.monotonic() - started < 2
    after = mesh.metrics.settled()
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 1
    generated = after[TOKENS] - before[TOKENS]
    assert generated < 100, f"{generated} tokens in 0.5 s: the generation outlived its deadline"


async def test_full_queue_gives_resource_exhausted_and_frees_its_place(tmp_path) -> None:
    predictor, metrics_port = llama_predictor(
        tmp_path, "small-queue", "--max-sequences", "1", "--max-queued-requests", "1"
    )
    predictor.start()
    metrics = Metrics(metrics_port)
    try:
        async with AsyncClient(predictor.address) as client:

            async def hold_stream() -> None:
                stream = client.predict_stream(
                    MODEL, prompt=COUNTING, max_tokens=1000, temperature=0
                )
                try:
                    await anext(stream)
                    await asyncio.sleep(30)
                finally:
                    await stream.aclose()

            running = asyncio.create_task(hold_stream())
            await asyncio.to_thread(wait_for, lambda: metrics.get(ACTIVE) == 1, 10, "one runs")
            waiting = asyncio.create_task(hold_stream())
            await asyncio.to_thread(
                wait_for, lambda: metrics.get("servemesh_llama_queued_requests") == 1, 10, "queued"
            )
            with pytest.raises(ResourceExhausted, match="max_queued_requests=1"):
                await client.predict(MODEL, prompt="hi", max_tokens=2)
            running.cancel()
            waiting.cancel()
            await asyncio.gather(running, waiting, return_exceptions=True)
            await asyncio.to_thread(metrics.settled)
            assert (await client.predict(MODEL, prompt="hi", max_tokens=2)).usage.completion_tokens
    finally:
        predictor.stop()
