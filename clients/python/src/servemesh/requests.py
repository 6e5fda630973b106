"""Builds servemesh.v1 request messages from Python arguments, for both clients."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, TypeVar

from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2, prediction_service_pb2

InputValue = bytes | str | inference_pb2.Tensor
Message = Mapping[str, str] | tuple[str, str]
# OpenAI's form ({"type": "json_schema", "json_schema": {...}}) or the message itself.
ResponseFormat = Mapping[str, Any] | generation_pb2.ResponseFormat
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


def _json_schema(spec: Any) -> generation_pb2.ResponseFormatJsonSchema:
    if not isinstance(spec, Mapping):
        raise InvalidArgument(
            'response_format of type "json_schema" needs "json_schema": {"name": ..., '
            '"schema": {...}}'
        )
    unknown = sorted(set(spec) - {"name", "description", "schema", "strict"})
    if unknown:
        raise InvalidArgument(f"response_format.json_schema: unknown keys {unknown}")
    schema = spec.get("schema")
    if schema is None:
        raise InvalidArgument("response_format.json_schema needs a schema")
    if not isinstance(schema, str):
        try:  # keys keep their order: properties come out in the order they are given
            schema = json.dumps(schema, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"response_format.json_schema.schema: {error}") from None
    # "strict" is accepted as OpenAI's clients send it: the schema is always enforced.
    return generation_pb2.ResponseFormatJsonSchema(
        name=spec.get("name", ""), description=spec.get("description", ""), schema=schema
    )


def response_format_message(value: ResponseFormat) -> generation_pb2.ResponseFormat:
    """A ResponseFormat message from OpenAI's form: {"type": "text"}, {"type": "json_object"}
    or {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}, where the
    schema is a dict or JSON text; a ResponseFormat message passes as it is."""
    if isinstance(value, generation_pb2.ResponseFormat):
        return value
    if not isinstance(value, Mapping):
        raise InvalidArgument("response_format must be a dict such as {'type': 'json_object'}")
    kind = value.get("type")
    allowed = {"type", "json_schema"} if kind == "json_schema" else {"type"}
    if unknown := sorted(set(value) - allowed):
        raise InvalidArgument(f"response_format: unknown keys {unknown}")
    if kind == "text":
        return generation_pb2.ResponseFormat(text=generation_pb2.ResponseFormatText())
    if kind == "json_object":
        return generation_pb2.ResponseFormat(json_object=generation_pb2.ResponseFormatJsonObject())
    if kind == "json_schema":
        return generation_pb2.ResponseFormat(json_schema=_json_schema(value.get("json_schema")))
    raise InvalidArgument(
        f"response_format type {kind!r}: use 'text', 'json_object' or 'json_schema'"
    )


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
    response_format: ResponseFormat
    draft_tokens: int


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
    response_format: ResponseFormat | None = None,
    draft_tokens: int | None = None,
) -> RequestT:
    """A Predict or PredictStream request from exactly one input: `message`, a user's chat
    message (after an optional `system` message; the model's chat template applies, as in the
    CLI), `prompt`, raw text the model continues as it is, `messages`, a whole conversation,
    or `inputs`, named inputs for models that take them. `response_format` makes the output
    JSON, in OpenAI's form or as a ResponseFormat message (see `response_format_message`),
    on models that can enforce it. `draft_tokens` asks for speculative decoding by prompt
    lookup, which speeds up output that repeats its prompt (0 turns it off)."""
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
            "response_format": response_format,
            "draft_tokens": draft_tokens,
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
        draft_tokens=draft_tokens,
        response_format=(
            None if response_format is None else response_format_message(response_format)
        ),
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
