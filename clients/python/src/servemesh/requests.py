"""Builds servemesh.v1 request messages from Python arguments, for both clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2, prediction_service_pb2

InputValue = bytes | str | inference_pb2.Tensor
Message = Mapping[str, str] | tuple[str, str]
RequestT = TypeVar(
    "RequestT",
    prediction_service_pb2.PredictRequest,
    prediction_service_pb2.PredictStreamRequest,
)

_ROLES = {
    "system": generation_pb2.CHAT_ROLE_SYSTEM,
    "user": generation_pb2.CHAT_ROLE_USER,
    "assistant": generation_pb2.CHAT_ROLE_ASSISTANT,
}


def chat_message(message: Message) -> generation_pb2.ChatMessage:
    """A chat turn from `{"role": ..., "content": ...}` or `(role, content)`."""
    role, content = (
        (message["role"], message["content"]) if isinstance(message, Mapping) else message
    )
    if role not in _ROLES:
        raise InvalidArgument(f"unknown chat role {role!r}; use one of {sorted(_ROLES)}")
    return generation_pb2.ChatMessage(role=_ROLES[role], content=content)


def inference_value(value: InputValue) -> inference_pb2.InferenceValue:
    """A named input value from bytes, text or a Tensor message."""
    if isinstance(value, bytes):
        return inference_pb2.InferenceValue(data=value)
    if isinstance(value, str):
        return inference_pb2.InferenceValue(text=value)
    return inference_pb2.InferenceValue(tensor=value)


def build_request(
    request_type: type[RequestT],
    model: str,
    prompt: str | None = None,
    *,
    messages: Sequence[Message] | None = None,
    inputs: Mapping[str, InputValue] | None = None,
    request_id: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    stop: Sequence[str] | None = None,
    seed: int | None = None,
    repeat_penalty: float | None = None,
) -> RequestT:
    """A Predict or PredictStream request: exactly one of prompt, messages or inputs."""
    candidates = {"prompt": prompt, "messages": messages, "inputs": inputs}
    given = [name for name, value in candidates.items() if value is not None]
    if len(given) != 1:
        raise InvalidArgument(
            f"give exactly one of prompt, messages or inputs (got {given or 'none'})"
        )
    request = request_type(model=model, request_id=request_id)
    if inputs is not None:
        for name, value in inputs.items():
            request.inference.inputs[name].CopyFrom(inference_value(value))
        return request
    params = generation_pb2.GenerationParameters(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=list(stop or ()),
        seed=seed,
        repeat_penalty=repeat_penalty,
    )
    generation = request.text_generation
    generation.parameters.CopyFrom(params)
    if messages is not None:
        generation.chat.SetInParent()  # an empty conversation is still a conversation
        generation.chat.messages.extend(chat_message(m) for m in messages)
    else:
        generation.prompt = prompt or ""
    return request
