"""Converts between servemesh.v1 messages and TorchServe's map<string, bytes> and JSON."""

from __future__ import annotations

import json
from typing import Any

from gateway.backends.torchserve.options import Task, TorchServeModel
from runtime.response_format import refuse_response_format
from runtime.textgen import parse_generation
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2
from servemesh.v1 import prediction_service_pb2 as pb

# Predict and PredictStream requests have the same fields, so the codec and the backend take
# either as it is and never convert one into the other. These are the fields they read;
# tests/unit/test_torchserve_codec.py fails when either message has a field not listed here,
# so a new field is handled (or knowingly ignored) in both paths at once.
Request = pb.PredictRequest | pb.PredictStreamRequest
REQUEST_FIELDS = ("model", "request_id", "text_generation", "inference")
REQUEST_KEY = "request"  # the input name under which text generation sends its JSON
FINISH_REASONS = {
    "eos_token": generation_pb2.FINISH_REASON_EOS_TOKEN,
    "length": generation_pb2.FINISH_REASON_LENGTH,
    "stop_sequence": generation_pb2.FINISH_REASON_STOP_SEQUENCE,
}


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
        # The handler samples with transformers, which has no grammar to hold it to a format;
        # a format it would ignore is refused rather than broken silently.
        refused = refuse_response_format(
            request.text_generation.parameters.response_format,
            request.model,
            "its TorchServe handler cannot constrain sampling to a grammar",
        )
        if refused is not None:
            raise refused
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


# servemesh's TorchServe handlers answer with a JSON object. Its keys become named outputs:
# "classes" (a list of {label, score, index}) a Classification, "embedding" (a list of
# numbers) a Vector, strings text, other values their JSON text. An object with an "error"
# key is a bad request that the handler refused, request by request.
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


def text_as_one_chunk(prediction: bytes, response: pb.PredictStreamResponse) -> None:
    """Fills `response` with a unary text-generation answer whole: its text as the one
    delta, with the finish reason and usage that a stream's last message carries."""
    out = text_output(prediction)
    response.text_delta.text = out.text
    response.text_delta.token_count = out.usage.completion_tokens
    response.finish_reason = out.finish_reason
    response.usage.CopyFrom(out.usage)


def text_chunk(prediction: bytes, response: pb.PredictStreamResponse) -> None:
    """Fills `response` from one streamed piece of the text-generation handler."""
    payload = _decode(prediction)
    _refused(payload)
    response.text_delta.text = payload.get("text", "")
    response.text_delta.token_count = int(payload.get("token_count", 0))
    if "finish_reason" in payload:
        response.finish_reason = FINISH_REASONS.get(payload["finish_reason"], 0)
        response.usage.CopyFrom(generation_pb2.Usage(**payload.get("usage", {})))
