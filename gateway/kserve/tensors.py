"""The V2 tensor wire format: input tensors paired with their raw contents, BYTES elements
(4-byte little-endian length prefixes) read from either representation, and output tensors
written as raw contents, the representation tritonclient reads for every data type."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kserve_v2 import grpc_predict_v2_pb2 as pb
from runtime.quoting import shown
from servemesh.errors import Internal, InvalidArgument

BYTES = "BYTES"
# Fixed-size data types and their little-endian numpy types. FP16 and BF16 have no repeated
# field in InferTensorContents, so they only ever arrive raw.
NUMPY_TYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BF16": "<u2",  # numpy has no bfloat16; only its size matters here
}
DATATYPES = (*NUMPY_TYPES, BYTES)
_PREFIX = struct.Struct("<I")

InputTensor = pb.ModelInferRequest.InferInputTensor


def _invalid(message: str, tensor: str | None = None) -> InvalidArgument:
    metadata = {"input": tensor[:64]} if tensor is not None else {}
    return InvalidArgument(message, reason="INVALID_TENSOR", metadata=metadata)


def paired_inputs(request: pb.ModelInferRequest) -> list[tuple[InputTensor, bytes | None]]:
    """Each input with its raw contents, or None where it carries typed `contents`. The
    protocol allows one representation per request: raw for every input, or for none."""
    raw = request.raw_input_contents
    if not raw:
        return [(tensor, None) for tensor in request.inputs]
    if len(raw) != len(request.inputs):
        raise _invalid(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents; "
            "send one raw_input_contents entry per input, in the order of inputs"
        )
    for tensor in request.inputs:
        if tensor.HasField("contents"):
            raise _invalid(
                f"input {shown(tensor.name)} sets contents while the request carries "
                "raw_input_contents; use one representation for every input",
                tensor.name,
            )
    return list(zip(request.inputs, raw, strict=True))


def element_count(tensor: InputTensor) -> int:
    """The number of elements `tensor`'s shape holds; a negative dimension (a variable size in
    metadata) is not a size a request can have."""
    if any(d < 0 for d in tensor.shape):
        raise _invalid(
            f"input {shown(tensor.name)} has shape {list(tensor.shape)}; a request's dimensions "
            "must be 0 or more (-1 means a variable size in metadata only)",
            tensor.name,
        )
    return math.prod(tensor.shape)


def check_datatype(tensor: InputTensor, expected: str) -> None:
    """Refuses `tensor` unless its datatype is `expected`, naming both."""
    if tensor.datatype == expected:
        return
    if tensor.datatype not in DATATYPES:
        raise _invalid(
            f"input {shown(tensor.name)} has datatype {shown(tensor.datatype)}, which the Open "
            f"Inference Protocol does not define; this input is {expected}",
            tensor.name,
        )
    raise _invalid(
        f"input {shown(tensor.name)} is {tensor.datatype}; this model takes it as {expected}",
        tensor.name,
    )


def split_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    """The elements of a raw BYTES tensor of `count` elements: each a 4-byte little-endian
    length, then that many bytes. Stops at the first element past `count`, so a body of tiny
    elements cannot make a list larger than the shape says."""
    elements: list[bytes] = []
    at = 0
    while at < len(raw):
        if len(elements) == count:
            raise _invalid(
                f"input {shown(name)}'s raw contents hold more than the {count} BYTES elements "
                f"its shape says ({len(raw) - at} bytes left after element {count - 1})",
                name,
            )
        if len(raw) - at < _PREFIX.size:
            raise _invalid(
                f"input {shown(name)}'s raw contents end {len(raw) - at} byte(s) into the "
                f"length prefix of element {len(elements)}; each BYTES element is a 4-byte "
                "little-endian length, then that many bytes",
                name,
            )
        (size,) = _PREFIX.unpack_from(raw, at)
        at += _PREFIX.size
        if size > len(raw) - at:
            raise _invalid(
                f"input {shown(name)}'s element {len(elements)} says it has {size} bytes, but "
                f"only {len(raw) - at} follow",
                name,
            )
        elements.append(raw[at : at + size])
        at += size
    if len(elements) != count:
        raise _invalid(
            f"input {shown(name)}'s raw contents hold {len(elements)} BYTES elements; its shape "
            f"says {count}",
            name,
        )
    return elements


def bytes_elements(tensor: InputTensor, raw: bytes | None) -> list[bytes]:
    """The elements of a BYTES input, from its raw contents or its `contents.bytes_contents`."""
    check_datatype(tensor, BYTES)
    count = element_count(tensor)
    if raw is not None:
        return split_bytes(raw, count, tensor.name)
    given = tensor.contents.bytes_contents
    if len(given) != count:
        raise _invalid(
            f"input {shown(tensor.name)} has {len(given)} elements in contents.bytes_contents; "
            f"its shape {list(tensor.shape)} says {count}",
            tensor.name,
        )
    return list(given)


def join_bytes(elements: Sequence[bytes]) -> bytes:
    """BYTES elements as raw contents: each one's length prefix, then its bytes."""
    return b"".join(_PREFIX.pack(len(e)) + e for e in elements)


@dataclass(frozen=True)
class OutputTensor:
    """An output tensor and its raw contents."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes


def output_tensor(
    name: str, datatype: str, rows: Sequence[Sequence[object]] | Sequence[object]
) -> OutputTensor:
    """An output of `rows`: a list of elements (shape [n]) or of equally long lists of
    elements (shape [n, k]); BYTES elements are bytes, the others numbers."""
    nested = bool(rows) and isinstance(rows[0], list | tuple)
    if nested:
        widths = {len(row) for row in rows}  # type: ignore[arg-type]
        if len(widths) != 1:
            # The models answer each element on its own; rows of different widths would be a
            # backend's fault, and the tensor cannot hold them.
            raise Internal(
                f"the model's {name} rows have different lengths {sorted(widths)}; a tensor "
                "cannot hold them",
                reason="RAGGED_OUTPUT",
            )
        shape: tuple[int, ...] = (len(rows), widths.pop())
        flat = [value for row in rows for value in row]  # type: ignore[union-attr]
    else:
        shape, flat = (len(rows),), list(rows)
    if datatype == BYTES:
        raw = join_bytes(flat)  # type: ignore[arg-type]
    else:
        raw = np.asarray(flat, dtype=NUMPY_TYPES[datatype]).tobytes()
    return OutputTensor(name, datatype, shape, raw)


def infer_response(
    model: str, request_id: str, outputs: Sequence[OutputTensor]
) -> pb.ModelInferResponse:
    """The response: each output's name, datatype and shape, and its elements in
    raw_output_contents at the same position. (tritonclient's as_numpy reads only raw contents
    for fixed-size types.)"""
    return pb.ModelInferResponse(
        model_name=model,
        id=request_id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(name=o.name, datatype=o.datatype, shape=o.shape)
            for o in outputs
        ],
        raw_output_contents=[o.raw for o in outputs],
    )
