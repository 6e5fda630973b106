"""Speculative decoding by prompt lookup in the llama predictor: the same output with and
without drafts, alone and in a batch, while drafts are really verified and accepted.

The prompts stay under 64 tokens and prompt plus output under 256: there llama.cpp's CPU
attention takes the same path for a row however the batch is made (docs/llama-predictor.md
says where it does not)."""

from __future__ import annotations

import asyncio

import pytest

from servemesh import AsyncClient, InvalidArgument
from tests.servers import MODEL, PROMPTS

DRAFTED = "servemesh_llama_draft_tokens_total"
ACCEPTED = "servemesh_llama_accepted_draft_tokens_total"
# Output that repeats its prompt, where drafts hit; and the free prompts, where they mostly miss.
COPY = (
    "Copy the text exactly.\nText: The old mill by the river turns when the water is high, "
    "and the farmers bring their wheat to it.\nCopy: The old mill by the river turns"
)
EIGHT = [COPY, *PROMPTS[:3], COPY.replace("wheat", "barley"), *PROMPTS[3:6]]


async def _generate(client: AsyncClient, prompt: str, draft: int, **params: object) -> tuple:
    text, usage = [], None
    async for chunk in client.predict_stream(
        MODEL, prompt=prompt, max_tokens=48, draft_tokens=draft, **params
    ):
        text.append(chunk.text)
        usage = chunk.usage or usage
    return "".join(text), usage.completion_tokens if usage else None


async def test_greedy_output_is_the_same_with_drafts_and_drafts_are_accepted(mesh) -> None:
    before = mesh.metrics.settled()
    async with AsyncClient(mesh.predictor.address) as client:
        plain = [await _generate(client, p, 0, temperature=0) for p in (COPY, *PROMPTS[:3])]
        middle = mesh.metrics.settled()
        drafted = [await _generate(client, p, 8, temperature=0) for p in (COPY, *PROMPTS[:3])]
    after = mesh.metrics.settled()
    assert drafted == plain
    assert middle.get(DRAFTED, 0) == before.get(DRAFTED, 0), "draft_tokens=0 must not speculate"
    accepted = after[ACCEPTED] - middle.get(ACCEPTED, 0)
    assert accepted >= 10, f"the copying prompt should accept drafts, accepted {accepted}"
    assert after[DRAFTED] - middle.get(DRAFTED, 0) >= accepted


async def test_a_batch_of_8_with_drafts_equals_the_solo_results_without(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        solo = [await _generate(client, p, 0, temperature=0) for p in EIGHT]
        batched = await asyncio.gather(*(_generate(client, p, 8, temperature=0) for p in EIGHT))
    assert list(batched) == solo


async def test_seeded_sampling_is_the_same_with_drafts(mesh) -> None:
    """Each position is sampled from its own logits, in order, as without drafts: the seeded
    draws and the repetition penalty's history are the same."""
    params = {"temperature": 0.7, "seed": 11, "repeat_penalty": 1.1}
    async with AsyncClient(mesh.predictor.address) as client:
        plain = await _generate(client, COPY, 0, **params)
        drafted = await _generate(client, COPY, 8, **params)
    assert drafted == plain


@pytest.mark.parametrize("max_tokens", [1, 2, 5])
async def test_drafts_never_take_a_generation_past_max_tokens(mesh, max_tokens: int) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        result = await client.predict(
            MODEL, prompt=COPY, max_tokens=max_tokens, temperature=0, draft_tokens=16
        )
    assert result.usage.completion_tokens == max_tokens


async def test_a_stop_sequence_inside_accepted_drafts_ends_the_output_there(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        full, _ = await _generate(client, COPY, 0, temperature=0)
        stop = full.split()[3]  # a word a few tokens into the copy, inside a run of drafts
        plain = await client.predict(MODEL, prompt=COPY, stop=[stop], temperature=0)
        drafted = await client.predict(
            MODEL, prompt=COPY, stop=[stop], temperature=0, draft_tokens=16
        )
    assert drafted.text == plain.text and stop not in drafted.text
    assert drafted.usage.completion_tokens == plain.usage.completion_tokens


async def test_a_draft_tokens_above_the_limit_is_capped_not_refused(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        result = await client.predict(
            MODEL, prompt=COPY, max_tokens=8, temperature=0, draft_tokens=2**32 - 1
        )
    assert result.usage.completion_tokens == 8


async def test_a_negative_draft_tokens_is_refused_by_the_sdk(mesh) -> None:
    async with AsyncClient(mesh.predictor.address) as client:
        with pytest.raises((InvalidArgument, ValueError)):
            await client.predict(MODEL, prompt=COPY, draft_tokens=-1)
