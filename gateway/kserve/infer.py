"""Checks a ModelInferRequest against the model's translator: its one batched input, the
outputs it asks for, and the parameters that the model reads. Every refusal is
INVALID_ARGUMENT naming what the model takes instead."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.kserve import parameters as params
from gateway.kserve.batch import check_batch_size
from gateway.kserve.models import TensorSpec, Translator
from gateway.kserve.tensors import bytes_elements, check_datatype, element_count, paired_inputs
from kserve_v2 import grpc_predict_v2_pb2 as pb
from runtime.quoting import cut, shown
from servemesh.errors import InvalidArgument

# Triton's classification extension, asked for by tritonclient's
# InferRequestedOutput(name, class_count=k).
CLASSIFICATION = "classification"


@dataclass(frozen=True)
class InferCall:
    """What a checked request asks for: the batch's elements, the parameters the model reads,
    and the outputs to return, in order."""

    elements: list[bytes]
    values: dict[str, params.Value]
    outputs: list[str]


def _described(spec: TensorSpec) -> str:
    return f"{spec.name!r} ({spec.datatype}, shape [n] or [n, 1])"


def _batch_input(request: pb.ModelInferRequest, translator: Translator) -> list[bytes]:
    model, spec = shown(request.model_name), translator.input
    pairs = paired_inputs(request)
    if not pairs:
        raise InvalidArgument(
            f"the request has no inputs; model {model} takes {_described(spec)}",
            reason="INVALID_TENSOR",
        )
    for tensor, _ in pairs:
        if tensor.name != spec.name:
            raise InvalidArgument(
                f"input {shown(tensor.name)} is not an input of model {model}; it takes "
                f"{_described(spec)} (ModelMetadata lists it)",
                reason="INVALID_TENSOR",
                metadata={"input": cut(tensor.name)},
            )
    if len(pairs) > 1:
        raise InvalidArgument(
            f"input {spec.name!r} is given {len(pairs)} times; give it once, with one element "
            "per item of the batch",
            reason="INVALID_TENSOR",
            metadata={"input": spec.name},
        )
    ((tensor, raw),) = pairs
    check_datatype(tensor, spec.datatype)
    element_count(tensor)  # a negative dimension is refused as such, not as an empty batch
    check_batch_size(tensor.name, tensor.shape)
    return bytes_elements(tensor, raw)


def _outputs(request: pb.ModelInferRequest, translator: Translator) -> list[str]:
    known = [o.name for o in translator.outputs]
    if not request.outputs:
        return known
    names: list[str] = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidArgument(
                f"output {shown(output.name)} is not an output of model "
                f"{shown(request.model_name)}; its outputs are: {', '.join(known)}",
                reason="INVALID_TENSOR",
                metadata={"output": cut(output.name)},
            )
        if CLASSIFICATION in output.parameters:
            raise InvalidArgument(
                f"the classification extension (class_count on output {output.name!r}) is not "
                "supported; ask for the scores, indices and labels outputs, and set the top_k "
                "request parameter for how many classes",
                reason="INVALID_PARAMETER",
                metadata={"output": output.name},
            )
        if output.name in names:
            raise InvalidArgument(
                f"output {output.name!r} is asked for twice", reason="INVALID_TENSOR"
            )
        names.append(output.name)
    return names


def checked_call(request: pb.ModelInferRequest, translator: Translator) -> InferCall:
    """The request's elements, parameters and outputs, or the first thing wrong with it.
    Parameters and outputs are checked first: they are cheap, and a request refused for a
    misspelt name should not have its tensors read first."""
    values = params.model_parameters(request.parameters, translator.parameters, request.model_name)
    outputs = _outputs(request, translator)
    return InferCall(_batch_input(request, translator), values, outputs)
