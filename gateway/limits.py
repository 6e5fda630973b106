"""Checks one request against the gateway's [limits] table before any backend work starts.

The gateway is the only server that sees every request, so it is where a request too big for
any backend is refused cheaply. The model's own token limits (prompt tokens, max_tokens) need
its tokenizer and stay with its server (runtime/textgen.py).
"""

from __future__ import annotations

from gateway.config import RequestLimits
from runtime.quoting import shown
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2
from servemesh.v1 import prediction_service_pb2 as pb

Request = pb.PredictRequest | pb.PredictStreamRequest


def _too_many(field: str, actual: int, unit: str, limit: str, maximum: int) -> InvalidArgument:
    # INVALID_PARAMETER like every other bad field, so a client handles one reason; the
    # metadata names the [limits] key, which an operator can raise.
    return InvalidArgument(
        f"{field} has {actual} {unit}; at most {maximum} (limits.{limit})",
        reason="INVALID_PARAMETER",
        metadata={
            "field": field,
            "limit": f"limits.{limit}",
            "max": str(maximum),
            "actual": str(actual),
        },
    )


def _value_bytes(value: inference_pb2.InferenceValue) -> int:
    """The payload size of one input: what a backend has to hold in memory for it."""
    kind = value.WhichOneof("kind")
    if kind == "data":
        return len(value.data)
    if kind == "text":
        return len(value.text.encode())
    if kind == "tensor":
        return len(value.tensor.raw_data)
    return value.ByteSize()


def _check_inference(inference: inference_pb2.InferenceInput, limits: RequestLimits) -> None:
    inputs = inference.inputs
    if len(inputs) > limits.max_inputs:
        raise _too_many("inference.inputs", len(inputs), "inputs", "max_inputs", limits.max_inputs)
    for name in sorted(inputs):
        size = _value_bytes(inputs[name])
        if size > limits.max_input_bytes:
            raise _too_many(
                f"inference.inputs[{shown(name)}]",
                size,
                "bytes",
                "max_input_bytes",
                limits.max_input_bytes,
            )


def _check_generation(
    generation: generation_pb2.TextGenerationInput, limits: RequestLimits
) -> None:
    if generation.WhichOneof("source") == "chat":
        messages = generation.chat.messages
        if len(messages) > limits.max_chat_messages:
            raise _too_many(
                "text_generation.chat.messages",
                len(messages),
                "messages",
                "max_chat_messages",
                limits.max_chat_messages,
            )
        # A chat is rendered into one prompt, so its turns share the prompt's budget;
        # otherwise a long prompt would pass as many short-enough messages.
        chars = sum(len(m.content) for m in messages)
        if chars > limits.max_prompt_chars:
            raise _too_many(
                "text_generation.chat.messages",
                chars,
                "characters of content",
                "max_prompt_chars",
                limits.max_prompt_chars,
            )
    elif len(generation.prompt) > limits.max_prompt_chars:
        raise _too_many(
            "text_generation.prompt",
            len(generation.prompt),
            "characters",
            "max_prompt_chars",
            limits.max_prompt_chars,
        )
    _check_response_format(generation.parameters, limits)
    stop = generation.parameters.stop
    field = "text_generation.parameters.stop"
    if len(stop) > limits.max_stop_sequences:
        raise _too_many(
            field, len(stop), "stop sequences", "max_stop_sequences", limits.max_stop_sequences
        )
    for i, sequence in enumerate(stop):
        if len(sequence) > limits.max_stop_sequence_chars:
            raise _too_many(
                f"{field}[{i}]",
                len(sequence),
                "characters",
                "max_stop_sequence_chars",
                limits.max_stop_sequence_chars,
            )


def _check_response_format(
    parameters: generation_pb2.GenerationParameters, limits: RequestLimits
) -> None:
    if not parameters.HasField("response_format"):
        return
    size = parameters.response_format.ByteSize()
    if size > limits.max_response_format_bytes:
        raise _too_many(
            "text_generation.parameters.response_format",
            size,
            "bytes",
            "max_response_format_bytes",
            limits.max_response_format_bytes,
        )


def check_request(request: Request, limits: RequestLimits) -> None:
    """Raises InvalidArgument, naming the field and the [limits] key, for the first limit
    that `request` exceeds."""
    kind = request.WhichOneof("input")
    if kind is None:
        raise InvalidArgument(
            f"the request to model {shown(request.model)} gives no input: set text_generation "
            "(a prompt or chat messages) or inference (named inputs); GetModel says which "
            "the model takes",
            reason="INPUT_REQUIRED",
        )
    if kind == "inference":
        _check_inference(request.inference, limits)
    elif kind == "text_generation":
        _check_generation(request.text_generation, limits)
