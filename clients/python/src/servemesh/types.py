"""Plain Python results of servemesh calls, converted from the protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from grpc_health.v1 import health_pb2

from servemesh.v1 import (
    generation_pb2,
    inference_pb2,
    model_pb2,
    prediction_service_pb2,
)


@dataclass(frozen=True)
class ClassScore:
    """One class of a classification result."""

    label: str
    score: float
    index: int


OutputValue = bytes | str | inference_pb2.Tensor | list[ClassScore] | list[float]


def enum_label(enum: EnumTypeWrapper, value: int) -> str:
    """`FINISH_REASON_EOS_TOKEN` -> `eos_token`; the zero value gives the empty string."""
    if value == 0:
        return ""
    name = enum.Name(value)
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).lower()


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation."""

    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_proto(cls, usage: generation_pb2.Usage) -> Usage:
        return cls(usage.prompt_tokens, usage.completion_tokens)


def output_value(value: inference_pb2.InferenceValue) -> OutputValue:
    """bytes, str, a Tensor message, a list of ClassScore (best first), or a list of floats."""
    kind = value.WhichOneof("kind")
    if kind == "classification":
        return [ClassScore(c.label, c.score, c.index) for c in value.classification.classes]
    if kind == "vector":
        return list(value.vector.values)
    return getattr(value, kind) if kind else b""


def _outputs(output: inference_pb2.InferenceOutput) -> dict[str, OutputValue]:
    return {name: output_value(value) for name, value in output.outputs.items()}


@dataclass(frozen=True)
class Prediction:
    """The complete result of `predict`. `request_id` is the id the server logged and traced
    the call under (its x-request-id metadata), or the response's own where it sent none."""

    request_id: str
    model: str
    text: str = ""
    finish_reason: str = ""
    usage: Usage | None = None
    outputs: dict[str, OutputValue] = field(default_factory=dict)

    @classmethod
    def from_proto(
        cls, response: prediction_service_pb2.PredictResponse, request_id: str = ""
    ) -> Prediction:
        request_id = request_id or response.request_id
        if response.HasField("text_generation"):
            out = response.text_generation
            return cls(
                request_id,
                response.model,
                text=out.text,
                finish_reason=enum_label(generation_pb2.FinishReason, out.finish_reason),
                usage=Usage.from_proto(out.usage),
            )
        return cls(request_id, response.model, outputs=_outputs(response.inference))


@dataclass(frozen=True)
class StreamChunk:
    """One message of `predict_stream`; the last one has a finish reason and usage.
    `request_id` is as in Prediction."""

    request_id: str
    model: str
    text: str = ""
    token_count: int = 0
    finish_reason: str = ""
    usage: Usage | None = None
    outputs: dict[str, OutputValue] = field(default_factory=dict)

    @classmethod
    def from_proto(
        cls, response: prediction_service_pb2.PredictStreamResponse, request_id: str = ""
    ) -> StreamChunk:
        return cls(
            request_id or response.request_id,
            response.model,
            text=response.text_delta.text,
            token_count=response.text_delta.token_count,
            finish_reason=enum_label(generation_pb2.FinishReason, response.finish_reason),
            usage=Usage.from_proto(response.usage) if response.HasField("usage") else None,
            outputs=_outputs(response.inference),
        )


@dataclass(frozen=True)
class Model:
    """A model the mesh serves, with what it can do and the limits requests must respect."""

    name: str
    backend_kind: str
    backend: str
    ready: bool
    streaming: bool
    input_kinds: tuple[str, ...]
    output_kinds: tuple[str, ...]
    context_length: int
    max_tokens: int
    max_queued_requests: int
    description: str

    @classmethod
    def from_proto(cls, info: model_pb2.ModelInfo) -> Model:
        caps, limits = info.capabilities, info.limits
        return cls(
            name=info.name,
            backend_kind=enum_label(model_pb2.BackendKind, info.backend_kind),
            backend=info.backend,
            ready=info.ready,
            streaming=caps.streaming,
            input_kinds=tuple(enum_label(model_pb2.InputKind, k) for k in caps.input_kinds),
            output_kinds=tuple(enum_label(model_pb2.OutputKind, k) for k in caps.output_kinds),
            context_length=limits.context_length,
            max_tokens=limits.max_tokens,
            max_queued_requests=limits.max_queued_requests,
            description=info.description,
        )


def health_name(response: health_pb2.HealthCheckResponse) -> str:
    """A grpc.health.v1 status as its name: 'SERVING', 'NOT_SERVING', ..."""
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
