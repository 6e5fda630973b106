"""The gateway's per-backend concurrency limit, in-process: slots, the queue, and callers
that leave while they wait."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import Admission
from servemesh.errors import ResourceExhausted


async def test_calls_past_the_limit_wait_in_order_then_run() -> None:
    admission, order = Admission("b", max_concurrency=1, max_queue=2), []
    gate = asyncio.Event()

    async def call(name: str) -> None:
        async with admission.slot():
            order.append(name)
            await gate.wait()

    tasks = [asyncio.create_task(call(n)) for n in "abc"]
    await asyncio.sleep(0.01)
    assert (admission.running, admission.waiting, order) == (1, 2, ["a"])
    with pytest.raises(ResourceExhausted, match="max_concurrency=1, max_queue=2"):
        await call("d")
    gate.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]
    assert (admission.running, admission.waiting) == (0, 0)


async def test_a_caller_that_leaves_the_queue_gives_its_place_up() -> None:
    admission, gate = Admission("b", max_concurrency=1, max_queue=1), asyncio.Event()

    async def call() -> None:
        async with admission.slot():
            await gate.wait()

    running = asyncio.create_task(call())
    waiting = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert admission.waiting == 0
    gate.set()
    await running
    assert admission.running == 0
    async with admission.slot():  # the slot is free again
        assert admission.running == 1


async def test_no_limit_by_default() -> None:
    admission = Admission("b")
    async with admission.slot(), admission.slot(), admission.slot():
        assert admission.running == 3
