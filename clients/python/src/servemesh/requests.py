"""Builds servemesh.v1 request messages from Python arguments, for both clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict, TypeVar

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


class RequestOptions(TypedDict, total=False):
    """What a Predict or PredictStream call takes besides the model and a user message, for
    both clients: one other input (a raw `prompt`, chat `messages` or named `inputs`) and the
    generation parameters."""

    system: str
    prompt: str
    messages: Sequence[Message]
    inputs: Mapping[str, InputValue]
    request_id: str
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: Sequence[str]
    seed: int
    repeat_penalty: float


def build_request(
    request_type: type[RequestT],
    model: str,
    message: str | None = None,
    *,
    system: str | None = None,
    prompt: str | None = None,
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
    """A Predict or PredictStream request from exactly one input: `message`, a user's chat
    message (after an optional `system` message; the model's chat template applies, as in the
    CLI), `prompt`, raw text the model continues as it is, `messages`, a whole conversation,
    or `inputs`, named inputs for models that take them."""
    candidates = {"message": message, "prompt": prompt, "messages": messages, "inputs": inputs}
    given = [name for name, value in candidates.items() if value is not None]
    if len(given) != 1:
        raise InvalidArgument(
            "give exactly one of a message (the positional argument), prompt=, messages= or "
            f"inputs= (got {', '.join(given) or 'none'})"
        )
    if system is not None and message is None:
        raise InvalidArgument("system= goes with a message; put it in messages= otherwise")
    request = request_type(model=model, request_id=request_id)
    if inputs is not None:
        generation = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "stop": stop,
            "seed": seed,
            "repeat_penalty": repeat_penalty,
        }
        if given := [name for name, value in generation.items() if value is not None]:
            raise InvalidArgument(
                f"{', '.join(given)}: generation parameters go with a message, prompt= or "
                "messages=, not with inputs="
            )
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
    if message is not None:
        messages = [("system", system), ("user", message)] if system else [("user", message)]
    if messages is not None:
        generation.chat.SetInParent()  # an empty conversation is still a conversation
        generation.chat.messages.extend(chat_message(m) for m in messages)
    else:
        generation.prompt = prompt or ""
    return request
