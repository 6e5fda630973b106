"""Text-generation checks shared by every text server (runtime/textgen.py): what a request
becomes, each bad parameter and its message, and how max_tokens fits the context."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest

from runtime.textgen import (
    MAX_STOP_SEQUENCE_CHARS,
    MIN_FACTOR_F32,
    GenerationLimits,
    GenerationSpec,
    Sampling,
    fit_max_tokens,
    parse_generation,
)
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2

LIMITS = GenerationLimits(context_length=100, max_tokens=50, default_max_tokens=16)
PARAMS = "text_generation.parameters."


def prompt(text: str = "Once upon a time", **parameters: Any) -> generation_pb2.TextGenerationInput:
    return generation_pb2.TextGenerationInput(
        prompt=text, parameters=generation_pb2.GenerationParameters(**parameters)
    )


def chat(*turns: tuple[int, str]) -> generation_pb2.TextGenerationInput:
    generation = generation_pb2.TextGenerationInput()
    generation.chat.SetInParent()
    for role, content in turns:
        generation.chat.messages.add(role=role, content=content)
    return generation


def refused(generation: generation_pb2.TextGenerationInput) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse_generation(generation, LIMITS)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_PARAMETER"
    return caught.value


def test_a_prompt_without_parameters_gets_the_default_sampling() -> None:
    assert parse_generation(prompt("Hi"), LIMITS) == GenerationSpec(
        prompt="Hi", messages=None, max_tokens=None, sampling=Sampling(), stop=()
    )
    assert Sampling() == Sampling(
        temperature=0.8, top_p=0.95, top_k=40, repeat_penalty=1.0, seed=None
    )


def test_every_parameter_set_is_kept() -> None:
    spec = parse_generation(
        prompt(
            max_tokens=50,
            temperature=0.5,  # values a float32 holds exactly
            top_p=0.25,
            top_k=3,
            stop=["\n", "END"],
            seed=2**64 - 1,
            repeat_penalty=1.5,
        ),
        LIMITS,
    )
    assert spec == GenerationSpec(
        prompt="Once upon a time",
        messages=None,
        max_tokens=50,
        sampling=Sampling(temperature=0.5, top_p=0.25, top_k=3, repeat_penalty=1.5, seed=2**64 - 1),
        stop=("\n", "END"),
    )


def test_zeros_that_are_set_are_not_the_defaults() -> None:
    """Presence, not truthiness: temperature 0 is greedy, top_k 0 and seed 0 are values."""
    sampling = parse_generation(prompt(temperature=0, top_k=0, seed=0), LIMITS).sampling
    assert (sampling.temperature, sampling.top_k, sampling.seed) == (0, 0, 0)


def test_chat_messages_get_their_role_names() -> None:
    spec = parse_generation(
        chat(
            (generation_pb2.CHAT_ROLE_SYSTEM, "Be brief."),
            (generation_pb2.CHAT_ROLE_USER, "Hi"),
            (generation_pb2.CHAT_ROLE_ASSISTANT, "Hello."),
            (generation_pb2.CHAT_ROLE_USER, ""),
        ),
        LIMITS,
    )
    assert spec.prompt is None
    assert spec.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": ""},
    ]


@pytest.mark.parametrize(
    ("generation", "field", "problem"),
    [
        pytest.param(
            generation_pb2.TextGenerationInput(),
            "text_generation.prompt",
            "is empty; give a prompt or chat messages",
            id="no-input",
        ),
        pytest.param(
            prompt(""),
            "text_generation.prompt",
            "is empty; give a prompt or chat messages",
            id="empty-prompt",
        ),
        pytest.param(
            chat(),
            "text_generation.chat.messages",
            "is empty; give at least one message",
            id="empty-chat",
        ),
        pytest.param(
            chat((generation_pb2.CHAT_ROLE_USER, "hi"), (generation_pb2.CHAT_ROLE_UNSPECIFIED, "")),
            "text_generation.chat.messages[1].role",
            "must be one of CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT",
            id="unspecified-role",
        ),
        pytest.param(
            chat((7, "hi")),  # a role from a newer contract
            "text_generation.chat.messages[0].role",
            "must be one of CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT",
            id="unknown-role",
        ),
        pytest.param(
            prompt(max_tokens=0),
            PARAMS + "max_tokens",
            "is 0; it must be between 1 and 50",
            id="max_tokens-0",
        ),
        pytest.param(
            prompt(max_tokens=51),
            PARAMS + "max_tokens",
            "is 51; it must be between 1 and 50",
            id="max_tokens-past-limit",
        ),
        pytest.param(
            prompt(temperature=-1),
            PARAMS + "temperature",
            "is -1.0; it must be 0 (greedy) or at least 1e-05",
            id="temperature-negative",
        ),
        pytest.param(
            prompt(temperature=1e-6),
            PARAMS + "temperature",
            "is 9.999999974752427e-07; it must be 0 (greedy) or at least 1e-05",
            id="temperature-tiny",
        ),
        pytest.param(
            prompt(temperature=math.nan),
            PARAMS + "temperature",
            "is nan; it must be 0 (greedy) or at least 1e-05",
            id="temperature-nan",
        ),
        pytest.param(
            prompt(temperature=math.inf),
            PARAMS + "temperature",
            "is inf; it must be 0 (greedy) or at least 1e-05",
            id="temperature-inf",
        ),
        pytest.param(
            prompt(top_p=0), PARAMS + "top_p", "is 0.0; it must be in (0, 1]", id="top_p-0"
        ),
        pytest.param(
            prompt(top_p=1.5), PARAMS + "top_p", "is 1.5; it must be in (0, 1]", id="top_p-over-1"
        ),
        pytest.param(
            prompt(top_p=math.nan), PARAMS + "top_p", "is nan; it must be in (0, 1]", id="top_p-nan"
        ),
        pytest.param(
            prompt(top_p=-0.5),
            PARAMS + "top_p",
            "is -0.5; it must be in (0, 1]",
            id="top_p-negative",
        ),
        pytest.param(
            prompt(repeat_penalty=0),
            PARAMS + "repeat_penalty",
            "is 0.0; it must be at least 1e-05",
            id="repeat_penalty-0",
        ),
        pytest.param(
            prompt(repeat_penalty=-1),
            PARAMS + "repeat_penalty",
            "is -1.0; it must be at least 1e-05",
            id="repeat_penalty-negative",
        ),
        pytest.param(
            prompt(repeat_penalty=math.inf),
            PARAMS + "repeat_penalty",
            "is inf; it must be at least 1e-05",
            id="repeat_penalty-inf",
        ),
        pytest.param(
            prompt(repeat_penalty=math.nan),
            PARAMS + "repeat_penalty",
            "is nan; it must be at least 1e-05",
            id="repeat_penalty-nan",
        ),
        pytest.param(
            prompt(stop=list("abcdefghi")),
            PARAMS + "stop",
            "has 9 sequences; at most 8",
            id="stop-too-many",
        ),
        pytest.param(
            prompt(stop=["END", ""]),
            PARAMS + "stop",
            "has a sequence of 0 characters; each must have 1 to 128",
            id="stop-empty",
        ),
        pytest.param(
            prompt(stop=["x" * 129]),
            PARAMS + "stop",
            "has a sequence of 129 characters; each must have 1 to 128",
            id="stop-too-long",
        ),
    ],
)
def test_a_bad_field_is_refused_with_its_name_and_the_rule(
    generation: generation_pb2.TextGenerationInput, field: str, problem: str
) -> None:
    error = refused(generation)
    assert error.message == f"{field} {problem}"
    assert error.metadata == {"field": field}


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param({"max_tokens": 1}, id="max_tokens-1"),
        pytest.param({"max_tokens": 50}, id="max_tokens-at-limit"),
        pytest.param({"temperature": 1e-5}, id="temperature-at-minimum"),
        pytest.param({"temperature": 2.0}, id="temperature-2"),
        pytest.param({"top_p": 1}, id="top_p-1"),
        pytest.param({"top_p": 1e-30}, id="top_p-tiny"),
        pytest.param({"repeat_penalty": 1e-5}, id="repeat_penalty-at-minimum"),
        pytest.param({"stop": list("abcdefgh")}, id="stop-8"),
        pytest.param({"stop": ["é" * MAX_STOP_SEQUENCE_CHARS]}, id="stop-128-characters"),
    ],
)
def test_values_at_the_edges_are_accepted(parameters: dict[str, Any]) -> None:
    parse_generation(prompt(**parameters), LIMITS)


def test_the_minimum_factor_is_the_float32_that_a_request_carries() -> None:
    carried = generation_pb2.GenerationParameters(temperature=1e-5).temperature
    assert carried == MIN_FACTOR_F32 != 1e-5
    assert parse_generation(prompt(temperature=1e-5), LIMITS).sampling.temperature == carried


def test_the_stop_limit_is_the_models() -> None:
    two = GenerationLimits(
        context_length=100, max_tokens=50, default_max_tokens=16, max_stop_sequences=2
    )
    parse_generation(prompt(stop=["a", "b"]), two)
    with pytest.raises(InvalidArgument) as caught:
        parse_generation(prompt(stop=["a", "b", "c"]), two)
    assert caught.value.message == "text_generation.parameters.stop has 3 sequences; at most 2"


def test_the_first_bad_field_is_named() -> None:
    error = refused(prompt("", max_tokens=0, temperature=-1))
    assert error.metadata == {"field": "text_generation.prompt"}
    error = refused(prompt(max_tokens=0, temperature=-1, top_p=0))
    assert error.metadata == {"field": PARAMS + "max_tokens"}
    error = refused(prompt(temperature=-1, top_p=0, repeat_penalty=0, stop=[""]))
    assert error.metadata == {"field": PARAMS + "temperature"}


def spec(max_tokens: int | None) -> GenerationSpec:
    return GenerationSpec("p", None, max_tokens, Sampling(), ())


@pytest.mark.parametrize(
    ("prompt_tokens", "max_tokens", "expected"),
    [
        pytest.param(10, None, 16, id="default"),
        pytest.param(90, None, 10, id="default-cut-to-the-room-left"),
        pytest.param(99, None, 1, id="one-token-of-room"),
        pytest.param(10, 90, 90, id="asked-fills-the-context-exactly"),
        pytest.param(10, 3, 3, id="asked"),
        pytest.param(0, 100, 100, id="empty-prompt"),
    ],
)
def test_fit_max_tokens(prompt_tokens: int, max_tokens: int | None, expected: int) -> None:
    assert fit_max_tokens(prompt_tokens, spec(max_tokens), LIMITS) == expected


@pytest.mark.parametrize("prompt_tokens", [100, 150])
@pytest.mark.parametrize("max_tokens", [None, 1])
def test_a_prompt_that_fills_the_context_is_too_long(
    prompt_tokens: int, max_tokens: int | None
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        fit_max_tokens(prompt_tokens, spec(max_tokens), LIMITS)
    assert caught.value.message == (
        f"the prompt has {prompt_tokens} tokens; the context holds 100, so it must have at "
        "most 99 to leave room for an answer"
    )
    assert caught.value.reason == "PROMPT_TOO_LONG"
    assert caught.value.metadata == {"prompt_tokens": str(prompt_tokens), "context_length": "100"}


def test_max_tokens_past_the_room_left_overflows_the_context() -> None:
    with pytest.raises(InvalidArgument) as caught:
        fit_max_tokens(10, spec(91), LIMITS)
    assert caught.value.message == (
        "the prompt has 10 tokens and max_tokens is 91; together they must fit the context of "
        "100 tokens (max_tokens 90 at most)"
    )
    assert caught.value.reason == "CONTEXT_OVERFLOW"
    assert caught.value.metadata == {"prompt_tokens": "10", "context_length": "100"}
