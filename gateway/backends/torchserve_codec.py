"""Converts between servemesh.v1 messages and TorchServe's map<string, bytes> and JSON.

servemesh's TorchServe handlers answer with a JSON object. Its keys become named outputs:
"classes" (a list of {label, score, index}) a Classification, "embedding" (a list of
numbers) a Vector, strings text, other values their JSON text. An object with an "error" key
is a bad request that the handler refused, request by request.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError, ModelConfig
from runtime.textgen import GenerationLimits, parse_generation
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2, model_pb2
from servemesh.v1 import prediction_service_pb2 as pb

Request = pb.PredictRequest | pb.PredictStreamRequest
REQUEST_KEY = "request"  # the input name under which text generation sends its JSON
FINISH_REASONS = {
    "eos_token": generation_pb2.FINISH_REASON_EOS_TOKEN,
    "length": generation_pb2.FINISH_REASON_LENGTH,
    "stop_sequence": generation_pb2.FINISH_REASON_STOP_SEQUENCE,
}


class Task(enum.Enum):
    """What a TorchServe model does, which decides how its inputs and outputs are mapped."""

    IMAGE_CLASSIFICATION = "image_classification"
    EMBEDDING = "embedding"
    TEXT_GENERATION = "text_generation"
    GENERIC = "generic"


@dataclass(frozen=True)
class TorchServeModel:
    """A model's options from its [models.NAME] table."""

    task: Task
    streaming: bool
    limits: GenerationLimits

    @classmethod
    def from_config(cls, model: ModelConfig) -> TorchServeModel:
        options = model.options
        try:
            task = Task(options.get("task", "generic"))
        except ValueError:
            raise ConfigError(
                f"models.{model.name}.task is {options['task']!r}; one of {[t.value for t in Task]}"
            ) from None
        max_tokens = int(options.get("max_tokens", 512))
        limits = GenerationLimits(
            context_length=int(options.get("context_length", 2048)),
            max_tokens=max_tokens,
            default_max_tokens=min(256, max_tokens),
        )
        return cls(task, bool(options.get("streaming", False)), limits)

    def capabilities(self) -> model_pb2.ModelCapabilities:
        if self.task is Task.TEXT_GENERATION:
            inputs = [model_pb2.INPUT_KIND_PROMPT, model_pb2.INPUT_KIND_CHAT]
            outputs = [model_pb2.OUTPUT_KIND_TEXT]
        else:
            inputs = [model_pb2.INPUT_KIND_NAMED_VALUES]
            outputs = [model_pb2.OUTPUT_KIND_NAMED_VALUES]
        return model_pb2.ModelCapabilities(
            streaming=self.streaming, input_kinds=inputs, output_kinds=outputs
        )

    def model_limits(self) -> model_pb2.ModelLimits:
        if self.task is not Task.TEXT_GENERATION:
            return model_pb2.ModelLimits()
        return model_pb2.ModelLimits(
            context_length=self.limits.context_length, max_tokens=self.limits.max_tokens
        )


def _value_bytes(name: str, value: inference_pb2.InferenceValue) -> bytes:
    kind = value.WhichOneof("kind")
    if kind == "data":
        return value.data
    if kind == "text":
        return value.text.encode()
    raise InvalidArgument(
        f"input {name!r} is a {kind or 'empty value'}; TorchServe models take bytes (data) or "
        "text inputs",
        reason="UNSUPPORTED_INPUT",
        metadata={"input": name},
    )


def _generation_json(
    generation: generation_pb2.TextGenerationInput, model: TorchServeModel, stream: bool
) -> bytes:
    spec = parse_generation(generation, model.limits)
    body: dict[str, Any] = {"stream": stream, "stop": list(spec.stop)}
    if spec.messages is not None:
        body["messages"] = spec.messages
    else:
        body["prompt"] = spec.prompt
    # The handler has the tokenizer, so it fits max_tokens to the context: a default shrinks
    # to the room the prompt leaves, a requested one that does not fit is refused.
    body["max_tokens"] = spec.max_tokens or model.limits.default_max_tokens
    body["max_tokens_requested"] = spec.max_tokens is not None
    body["context_length"] = model.limits.context_length
    s = spec.sampling
    body |= {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "repeat_penalty": s.repeat_penalty,
        "seed": s.seed,
    }
    return json.dumps(body).encode()


def torchserve_input(request: Request, model: TorchServeModel, stream: bool) -> dict[str, bytes]:
    """The `input` map of TorchServe's PredictionsRequest for `request`."""
    kind = request.WhichOneof("input")
    if model.task is Task.TEXT_GENERATION:
        if kind != "text_generation":
            raise InvalidArgument(
                f"model {request.model!r} generates text: give text_generation (a prompt or chat "
                "messages), not named inference inputs",
                reason="UNSUPPORTED_INPUT",
            )
        return {REQUEST_KEY: _generation_json(request.text_generation, model, stream)}
    if kind != "inference" or not request.inference.inputs:
        raise InvalidArgument(
            f"model {request.model!r} takes named inputs (inference.inputs), such as "
            f"{_example_input(model.task)}",
            reason="UNSUPPORTED_INPUT",
        )
    return {name: _value_bytes(name, v) for name, v in request.inference.inputs.items()}


def _example_input(task: Task) -> str:
    return {
        Task.IMAGE_CLASSIFICATION: '"image" with the encoded image bytes',
        Task.EMBEDDING: '"text" with the sentence',
    }.get(task, "the names its handler reads")


def _decode(prediction: bytes) -> Any:
    try:
        return json.loads(prediction)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _output_value(key: str, value: Any) -> inference_pb2.InferenceValue:
    if key == "classes" and isinstance(value, list):
        classes = [
            inference_pb2.ClassScore(
                label=str(c["label"]), score=float(c["score"]), index=int(c.get("index", 0))
            )
            for c in value
        ]
        return inference_pb2.InferenceValue(
            classification=inference_pb2.Classification(classes=classes)
        )
    if key == "embedding" and isinstance(value, list):
        return inference_pb2.InferenceValue(vector=inference_pb2.Vector(values=value))
    if isinstance(value, str):
        return inference_pb2.InferenceValue(text=value)
    return inference_pb2.InferenceValue(text=json.dumps(value))


def _refused(payload: Any) -> None:
    if isinstance(payload, dict) and "error" in payload:
        raise InvalidArgument(str(payload["error"]), reason="REFUSED_BY_HANDLER")


def inference_output(prediction: bytes) -> inference_pb2.InferenceOutput:
    """A handler's answer as named outputs; bytes that are not a JSON object stay bytes."""
    payload = _decode(prediction)
    _refused(payload)
    if not isinstance(payload, dict):
        return inference_pb2.InferenceOutput(
            outputs={"output": inference_pb2.InferenceValue(data=prediction)}
        )
    return inference_pb2.InferenceOutput(
        outputs={k: _output_value(k, v) for k, v in payload.items()}
    )


def text_output(prediction: bytes) -> generation_pb2.TextGenerationOutput:
    """The text-generation handler's final answer of a unary call."""
    payload = _decode(prediction)
    _refused(payload)
    return generation_pb2.TextGenerationOutput(
        text=payload.get("text", ""),
        finish_reason=FINISH_REASONS.get(payload.get("finish_reason", ""), 0),
        usage=generation_pb2.Usage(**payload.get("usage", {})),
    )


def text_chunk(prediction: bytes, response: pb.PredictStreamResponse) -> None:
    """Fills `response` from one streamed piece of the text-generation handler."""
    payload = _decode(prediction)
    _refused(payload)
    response.text_delta.text = payload.get("text", "")
    response.text_delta.token_count = int(payload.get("token_count", 0))
    if "finish_reason" in payload:
        response.finish_reason = FINISH_REASONS.get(payload["finish_reason"], 0)
        response.usage.CopyFrom(generation_pb2.Usage(**payload.get("usage", {})))
