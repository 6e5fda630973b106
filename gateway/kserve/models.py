"""What each kind of model looks like in the Open Inference Protocol: its tensors' names,
data types and shapes, the parameters it reads, and the translation of one element of a
batch into a servemesh.v1 PredictRequest and of the answers back into output tensors."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.kserve import parameters as params
from gateway.kserve.tensors import BYTES, OutputTensor, output_tensor
from kserve_v2 import grpc_predict_v2_pb2 as pb
from runtime.quoting import shown
from servemesh.errors import Internal, InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2, model_pb2
from servemesh.v1 import prediction_service_pb2 as spb

UINT32_MAX, UINT64_MAX = 2**32 - 1, 2**64 - 1


class ModelKind(enum.Enum):
    """The kinds of model the protocol serves; the values are the `task` option of
    deploy/mesh.toml."""

    IMAGE_CLASSIFIER = "image_classification"
    EMBEDDER = "embedding"
    TEXT_GENERATOR = "text_generation"
    OTHER = "other"  # named servemesh.v1 inputs of its own: not mapped to tensors


def kind_of_task(task: object) -> ModelKind | None:
    """The kind that a model's `task` option names; None where the model has none."""
    if task is None:
        return None
    try:
        return ModelKind(task)
    except ValueError:
        return ModelKind.OTHER


def kind_of_info(info: model_pb2.ModelInfo) -> ModelKind | None:
    """The kind of a model without a `task` option (a servemesh predictor's) from what its
    backend says it can do; None while the backend has not said."""
    caps = info.capabilities
    if not caps.input_kinds:
        return None
    text_in = {model_pb2.INPUT_KIND_PROMPT, model_pb2.INPUT_KIND_CHAT} & set(caps.input_kinds)
    if text_in and model_pb2.OUTPUT_KIND_TEXT in caps.output_kinds:
        return ModelKind.TEXT_GENERATOR
    return ModelKind.OTHER


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as ModelMetadata describes it; -1 is a dimension of variable size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(
            name=self.name, datatype=self.datatype, shape=self.shape
        )


def _element_request(model: str, request_id: str, index: int) -> spb.PredictRequest:
    # Each element's own id, so the backend's log lines of one batch can be told apart.
    return spb.PredictRequest(model=model, request_id=f"{request_id}-{index}" if request_id else "")


def _text(element: bytes, index: int, tensor: str) -> str:
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidArgument(
            f"element {index} of input {shown(tensor)} is not UTF-8 text ({error})",
            reason="INVALID_TENSOR",
            metadata={"input": tensor, "element": str(index)},
        ) from None


def _output(response: spb.PredictResponse, key: str, kind: str) -> inference_pb2.InferenceValue:
    value = response.inference.outputs.get(key)
    if value is None or value.WhichOneof("kind") != kind:
        got = sorted(response.inference.outputs) or [response.WhichOneof("output") or "nothing"]
        raise Internal(
            f"model {shown(response.model)} answered without a {kind} named {key!r} (it "
            f"answered {', '.join(got)}); is its task in the mesh configuration right?",
            reason="UNEXPECTED_OUTPUT",
        )
    return value


class Translator:
    """One kind of model: its input (one BYTES element per item of the batch), outputs and
    parameters, and how an element becomes a servemesh.v1 request."""

    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    parameters: tuple[str, ...] = ()

    def requests(
        self,
        model: str,
        request_id: str,
        elements: Sequence[bytes],
        values: Mapping[str, params.Value],
    ) -> list[spb.PredictRequest]:
        raise NotImplementedError

    def output_tensors(self, responses: Sequence[spb.PredictResponse]) -> list[OutputTensor]:
        """Every output, in the order of `outputs`, with one row per response."""
        raise NotImplementedError


class ImageClassifier(Translator):
    """Encoded images in; each image's top classes out, best first."""

    input = TensorSpec("image", BYTES, (-1,))
    outputs = (
        TensorSpec("scores", "FP32", (-1, -1)),
        TensorSpec("indices", "INT64", (-1, -1)),
        TensorSpec("labels", BYTES, (-1, -1)),
    )
    parameters = ("top_k",)

    def requests(
        self,
        model: str,
        request_id: str,
        elements: Sequence[bytes],
        values: Mapping[str, params.Value],
    ) -> list[spb.PredictRequest]:
        extra: dict[str, inference_pb2.InferenceValue] = {}
        if "top_k" in values:
            # The handler reads options as text inputs; it checks the upper bound (its class
            # count).
            top_k = params.integer("top_k", values["top_k"], low=1)
            extra["top_k"] = inference_pb2.InferenceValue(text=str(top_k))
        out = []
        for i, element in enumerate(elements):
            request = _element_request(model, request_id, i)
            request.inference.inputs["image"].data = element
            for name, value in extra.items():
                request.inference.inputs[name].CopyFrom(value)
            out.append(request)
        return out

    def output_tensors(self, responses: Sequence[spb.PredictResponse]) -> list[OutputTensor]:
        rows = [_output(r, "classes", "classification").classification.classes for r in responses]
        return [
            output_tensor("scores", "FP32", [[c.score for c in row] for row in rows]),
            output_tensor("indices", "INT64", [[c.index for c in row] for row in rows]),
            output_tensor("labels", BYTES, [[c.label.encode() for c in row] for row in rows]),
        ]


class Embedder(Translator):
    """Texts in; one vector per text out (all-MiniLM-L6-v2's are 384 wide and normalized)."""

    input = TensorSpec("text", BYTES, (-1,))
    outputs = (TensorSpec("embedding", "FP32", (-1, -1)),)

    def requests(
        self,
        model: str,
        request_id: str,
        elements: Sequence[bytes],
        values: Mapping[str, params.Value],
    ) -> list[spb.PredictRequest]:
        out = []
        for i, element in enumerate(elements):
            request = _element_request(model, request_id, i)
            request.inference.inputs["text"].text = _text(element, i, "text")
            out.append(request)
        return out

    def output_tensors(self, responses: Sequence[spb.PredictResponse]) -> list[OutputTensor]:
        vectors = [list(_output(r, "embedding", "vector").vector.values) for r in responses]
        return [output_tensor("embedding", "FP32", vectors)]


def _finish_reason(reason: int) -> bytes:
    if reason == generation_pb2.FINISH_REASON_UNSPECIFIED:
        return b""
    name = generation_pb2.FinishReason.Name(reason)  # type: ignore[arg-type]
    return name.removeprefix("FINISH_REASON_").lower().encode()


class TextGenerator(Translator):
    """Triton's generate convention: prompts in `text_input`, generated text out in
    `text_output`, with each one's finish reason. A prompt is raw text the model continues;
    with the `chat` parameter it is one user message, rendered with the model's chat
    template."""

    input = TensorSpec("text_input", BYTES, (-1,))
    outputs = (
        TensorSpec("text_output", BYTES, (-1,)),
        TensorSpec("finish_reason", BYTES, (-1,)),
    )
    parameters = (
        "chat",
        "max_tokens",
        "repeat_penalty",
        "seed",
        "stop",
        "temperature",
        "top_k",
        "top_p",
    )

    def _generation(
        self, values: Mapping[str, params.Value]
    ) -> generation_pb2.GenerationParameters:
        # Ranges beyond the field types are the model server's to check (as for servemesh.v1).
        p = generation_pb2.GenerationParameters()
        for name in ("max_tokens", "top_k"):
            if name in values:
                setattr(p, name, params.integer(name, values[name], low=0, high=UINT32_MAX))
        if "seed" in values:
            p.seed = params.integer("seed", values["seed"], low=0, high=UINT64_MAX)
        for name in ("temperature", "top_p", "repeat_penalty"):
            if name in values:
                setattr(p, name, params.number(name, values[name]))
        if "stop" in values:
            p.stop.append(params.string("stop", values["stop"]))
        return p

    def requests(
        self,
        model: str,
        request_id: str,
        elements: Sequence[bytes],
        values: Mapping[str, params.Value],
    ) -> list[spb.PredictRequest]:
        generation = self._generation(values)
        chat = params.boolean("chat", values["chat"]) if "chat" in values else False
        out = []
        for i, element in enumerate(elements):
            request = _element_request(model, request_id, i)
            text = _text(element, i, "text_input")
            if chat:
                request.text_generation.chat.messages.add(
                    role=generation_pb2.CHAT_ROLE_USER, content=text
                )
            else:
                request.text_generation.prompt = text
            request.text_generation.parameters.CopyFrom(generation)
            out.append(request)
        return out

    def output_tensors(self, responses: Sequence[spb.PredictResponse]) -> list[OutputTensor]:
        for r in responses:
            if r.WhichOneof("output") != "text_generation":
                raise Internal(
                    f"model {shown(r.model)} answered {r.WhichOneof('output') or 'nothing'}, not "
                    "generated text",
                    reason="UNEXPECTED_OUTPUT",
                )
        outputs = [r.text_generation for r in responses]
        return [
            output_tensor("text_output", BYTES, [o.text.encode() for o in outputs]),
            output_tensor(
                "finish_reason", BYTES, [_finish_reason(o.finish_reason) for o in outputs]
            ),
        ]


TRANSLATORS: dict[ModelKind, Translator] = {
    ModelKind.IMAGE_CLASSIFIER: ImageClassifier(),
    ModelKind.EMBEDDER: Embedder(),
    ModelKind.TEXT_GENERATOR: TextGenerator(),
}
