"""Checks a text-generation request against a model's limits, before any work starts.

Shared by every server that generates text, so the same request gets the same answer.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from runtime import token_budget
from runtime.field_errors import invalid_field
from runtime.response_format import DEFAULT_MAX_SCHEMA_BYTES, JsonFormat, parse_response_format
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2

ROLE_NAMES = {
    generation_pb2.CHAT_ROLE_SYSTEM: "system",
    generation_pb2.CHAT_ROLE_USER: "user",
    generation_pb2.CHAT_ROLE_ASSISTANT: "assistant",
}
MAX_STOP_SEQUENCE_CHARS = 128
# The smallest temperature (other than 0) and repeat penalty. Logits are divided by them, and
# below about 1e-37 that overflows float32 to inf: sampling then sees NaN probabilities, which
# fails the request in transformers and draws an arbitrary token in llama.cpp. 1e-5 leaves a
# wide margin and loses nothing: a temperature that small is already greedy.
MIN_FACTOR = 1e-5
# The bound as a protobuf float holds it: a request's 1e-5 arrives as 9.99999975e-06.
MIN_FACTOR_F32: float = struct.unpack("<f", struct.pack("<f", MIN_FACTOR))[0]


@dataclass(frozen=True)
class GenerationLimits:
    """What a text model accepts."""

    context_length: int
    max_tokens: int
    default_max_tokens: int
    max_stop_sequences: int = 8
    max_schema_bytes: int = DEFAULT_MAX_SCHEMA_BYTES


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked; temperature 0 is greedy."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.0
    seed: int | None = None


@dataclass(frozen=True)
class GenerationSpec:
    """A checked request: a prompt or chat messages, and how to generate."""

    prompt: str | None
    messages: list[dict[str, str]] | None
    max_tokens: int | None
    sampling: Sampling
    stop: tuple[str, ...]
    # JSON the output must be, or None for free text; the server that generates enforces it.
    response_format: JsonFormat | None = None
    # Most prompt-lookup draft tokens per step; None takes the server's default.
    draft_tokens: int | None = None


def _messages(chat: generation_pb2.ChatConversation) -> list[dict[str, str]]:
    if not chat.messages:
        raise invalid_field("text_generation.chat.messages", "is empty; give at least one message")
    messages = []
    for i, message in enumerate(chat.messages):
        role = ROLE_NAMES.get(message.role)
        if role is None:
            raise invalid_field(
                f"text_generation.chat.messages[{i}].role",
                f"must be one of {', '.join(generation_pb2.ChatRole.keys()[1:])}",
            )
        messages.append({"role": role, "content": message.content})
    return messages


def parse_generation(
    generation: generation_pb2.TextGenerationInput, limits: GenerationLimits
) -> GenerationSpec:
    """The checked form of `generation`; InvalidArgument names the first bad field."""
    source = generation.WhichOneof("source")
    prompt, messages = None, None
    if source == "prompt" and generation.prompt:
        prompt = generation.prompt
    elif source == "chat":
        messages = _messages(generation.chat)
    else:
        raise invalid_field("text_generation.prompt", "is empty; give a prompt or chat messages")

    p = generation.parameters
    field = "text_generation.parameters."
    if p.HasField("max_tokens") and not 1 <= p.max_tokens <= limits.max_tokens:
        raise invalid_field(
            field + "max_tokens",
            f"is {p.max_tokens}; it must be between 1 and {limits.max_tokens}",
        )
    if p.HasField("temperature") and not (
        math.isfinite(p.temperature) and (p.temperature == 0 or p.temperature >= MIN_FACTOR_F32)
    ):
        raise invalid_field(
            field + "temperature",
            f"is {p.temperature}; it must be 0 (greedy) or at least {MIN_FACTOR}",
        )
    if p.HasField("top_p") and not 0 < p.top_p <= 1:
        raise invalid_field(field + "top_p", f"is {p.top_p}; it must be in (0, 1]")
    if p.HasField("repeat_penalty") and not (
        math.isfinite(p.repeat_penalty) and p.repeat_penalty >= MIN_FACTOR_F32
    ):
        raise invalid_field(
            field + "repeat_penalty", f"is {p.repeat_penalty}; it must be at least {MIN_FACTOR}"
        )
    if len(p.stop) > limits.max_stop_sequences:
        raise invalid_field(
            field + "stop", f"has {len(p.stop)} sequences; at most {limits.max_stop_sequences}"
        )
    for stop in p.stop:
        if not 0 < len(stop) <= MAX_STOP_SEQUENCE_CHARS:
            raise invalid_field(
                field + "stop",
                f"has a sequence of {len(stop)} characters; each must have 1 to "
                f"{MAX_STOP_SEQUENCE_CHARS}",
            )
    default = Sampling()
    sampling = Sampling(
        temperature=p.temperature if p.HasField("temperature") else default.temperature,
        top_p=p.top_p if p.HasField("top_p") else default.top_p,
        top_k=p.top_k if p.HasField("top_k") else default.top_k,
        repeat_penalty=p.repeat_penalty if p.HasField("repeat_penalty") else default.repeat_penalty,
        seed=p.seed if p.HasField("seed") else None,
    )
    max_tokens = p.max_tokens if p.HasField("max_tokens") else None
    response_format = parse_response_format(p.response_format, limits.max_schema_bytes)
    draft_tokens = p.draft_tokens if p.HasField("draft_tokens") else None
    return GenerationSpec(
        prompt, messages, max_tokens, sampling, tuple(p.stop), response_format, draft_tokens
    )


def fit_max_tokens(prompt_tokens: int, spec: GenerationSpec, limits: GenerationLimits) -> int:
    """max_tokens for this prompt: as asked, or the default cut to what the context leaves."""
    try:
        return token_budget.fit_max_tokens(
            prompt_tokens, limits.context_length, spec.max_tokens, limits.default_max_tokens
        )
    except token_budget.ContextOverflow as error:
        raise InvalidArgument(
            str(error),
            reason=error.reason,
            metadata={
                "prompt_tokens": str(prompt_tokens),
                "context_length": str(limits.context_length),
            },
        ) from None
