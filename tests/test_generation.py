"""Text generation through the gateway and the llama predictor, unary and streaming."""

from __future__ import annotations

import asyncio

import pytest

from servemesh import AsyncClient, Client
from tests.servers import MODEL, PROMPTS

PROMPT = "The three primary colors are"


def test_predict_returns_text_usage_and_finish_reason(client: Client) -> None:
    result = client.predict(MODEL, prompt=PROMPT, max_tokens=12, temperature=0)
    assert result.text.strip()
    assert result.model == MODEL
    assert result.request_id
    assert result.usage is not None
    assert result.usage.prompt_tokens == 5  # "The|three|primary|colors|are", no BOS
    assert result.finish_reason in {"length", "eos_token"}
    if result.finish_reason == "length":
        assert result.usage.completion_tokens == 12


def test_stream_deltas_add_up_to_the_unary_result(client: Client) -> None:
    unary = client.predict(MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
    chunks = list(client.predict_stream(MODEL, prompt=PROMPT, max_tokens=24, temperature=0))
    final = chunks[-1]
    assert sum(1 for c in chunks if c.text) > 3, "tokens should arrive one by one"
    assert all(not c.finish_reason for c in chunks[:-1])
    assert final.finish_reason == unary.finish_reason
    assert final.usage == unary.usage
    assert sum(c.token_count for c in chunks) == final.usage.completion_tokens
    assert "".join(c.text for c in chunks) == unary.text
    assert len({c.request_id for c in chunks}) == 1


def test_chat_messages_go_through_the_models_chat_template(client: Client) -> None:
    question = "What is the capital of France? Answer in one word."
    raw = client.predict(MODEL, prompt=question, max_tokens=8, temperature=0)
    chat = client.predict(
        MODEL,
        messages=[
            {"role": "system", "content": "You are a geography teacher."},
            {"role": "user", "content": question},
        ],
        max_tokens=40,
        temperature=0,
    )
    # The template wraps each turn in <|im_start|>ROLE ... <|im_end|> and opens the answer.
    assert chat.usage.prompt_tokens >= raw.usage.prompt_tokens + 10
    assert "Paris" in chat.text
    assert chat.finish_reason == "eos_token", "an instruct model ends its chat turn by itself"


def test_stop_sequence_ends_generation_and_is_not_returned(client: Client) -> None:
    free = client.predict(MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0)
    assert " 9," in free.text
    stopped = client.predict(
        MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0, stop=[" 9"]
    )
    assert stopped.finish_reason == "stop_sequence"
    assert stopped.text == free.text[: free.text.index(" 9")]
    streamed = "".join(
        c.text
        for c in client.predict_stream(
            MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0, stop=[" 9"]
        )
    )
    assert streamed == stopped.text


def test_seed_makes_sampling_repeatable(client: Client) -> None:
    args = dict(max_tokens=16, temperature=1.0, top_p=0.9, top_k=50)
    a = client.predict(MODEL, prompt="Once upon a time", seed=7, **args)
    b = client.predict(MODEL, prompt="Once upon a time", seed=7, **args)
    assert a.text == b.text


def test_multibyte_characters_are_never_split_across_deltas(client: Client) -> None:
    prompt = "Écris une phrase en français avec des accents: é, è, à, ç. Puis des emojis 🎉🌍:"
    unary = client.predict(MODEL, prompt=prompt, max_tokens=40, temperature=0)
    chunks = list(client.predict_stream(MODEL, prompt=prompt, max_tokens=40, temperature=0))
    assert "".join(c.text for c in chunks) == unary.text
    assert "\ufffd" not in unary.text
    assert any(ord(ch) > 127 for ch in unary.text), unary.text


async def test_concurrent_requests_get_their_own_correct_results(client: Client, mesh) -> None:
    prompts = PROMPTS[:6]
    expected = [client.predict(MODEL, prompt=p, max_tokens=20, temperature=0).text for p in prompts]
    async with AsyncClient(mesh.gateway.address) as aclient:
        unary = [aclient.predict(MODEL, prompt=p, max_tokens=20, temperature=0) for p in prompts]

        async def streamed(prompt: str) -> str:
            parts = []
            async for chunk in aclient.predict_stream(
                MODEL, prompt=prompt, max_tokens=20, temperature=0
            ):
                parts.append(chunk.text)
            return "".join(parts)

        results = await asyncio.gather(*unary, *(streamed(p) for p in prompts))
    assert [r.text for r in results[: len(prompts)]] == expected
    assert list(results[len(prompts) :]) == expected
    assert len({r.request_id for r in results[: len(prompts)]}) == len(prompts)


def test_request_id_is_kept_end_to_end(client: Client) -> None:
    result = client.predict(MODEL, prompt="Hi", max_tokens=2, request_id="trace-123")
    assert result.request_id == "trace-123"
    chunks = list(client.predict_stream(MODEL, prompt="Hi", max_tokens=2, request_id="trace-456"))
    assert {c.request_id for c in chunks} == {"trace-456"}


@pytest.mark.parametrize("target", ["gateway", "predictor"])
def test_list_and_get_model(mesh, target: str) -> None:
    address = getattr(mesh, target).address
    with Client(address) as c:
        (model,) = [m for m in c.list_models() if m.name == MODEL]
        assert model == c.get_model(MODEL)
    assert model.name == MODEL
    assert model.backend_kind == "llama_cpp"
    assert model.backend == ("llama" if target == "gateway" else "")
    assert model.ready and model.streaming
    assert model.input_kinds == ("prompt", "chat")
    assert model.output_kinds == ("text",)
    assert model.context_length == 2048 and model.max_tokens == 1024


def test_a_positional_string_is_a_user_message_as_in_the_cli(client: Client) -> None:
    """The first thing a newcomer types answers the question instead of continuing it."""
    question = "What is the capital of France? Answer in one word."
    args = dict(max_tokens=8, temperature=0)
    positional = client.predict(MODEL, question, **args)
    chat = client.predict(MODEL, messages=[{"role": "user", "content": question}], **args)
    assert positional.text == chat.text and "Paris" in positional.text
    assert client.predict(MODEL, prompt=question, **args).text != positional.text
