"""What a request body may weigh, checked on its bytes before they are parsed.

Parsing copies a body, and a request refused only after parsing (for its prompt length, say)
has already cost several times its size in memory. A text model needs a few hundred kB at
most: a prediction is weighed by its text input (read from its outermost fields, without
parsing what they hold). The bound on
every request, limits.max_request_bytes, is gRPC's own receive limit: it refuses a bigger
request from its length prefix, before reading it.
"""

from __future__ import annotations

from gateway.config import RequestLimits
from servemesh.errors import InvalidArgument
from servemesh.v1 import prediction_service_pb2 as pb

SERVICE = "/servemesh.v1.PredictionService/"
PREDICT_METHODS = (SERVICE + "Predict", SERVICE + "PredictStream")
_SCANNED_FIELDS = 8  # a real request has its input among its first three fields


def _input_field(name: str) -> int:
    requests = (pb.PredictRequest, pb.PredictStreamRequest)
    numbers = {m.DESCRIPTOR.fields_by_name[name].number for m in requests}
    (number,) = numbers  # both request messages must agree, or this check would misread one
    return number


TEXT_GENERATION = _input_field("text_generation")


def _varint(body: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(body) and shift < 64:
        byte = body[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7
    raise ValueError("truncated varint")


def input_sizes(body: bytes) -> dict[int, int]:
    """The sizes of the length-delimited fields among a message's first outermost fields, by
    field number. A body that is not protobuf ends the scan early; parsing then says why."""
    sizes: dict[int, int] = {}
    at = 0
    try:
        for _ in range(_SCANNED_FIELDS):
            if at >= len(body):
                break
            key, at = _varint(body, at)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, at = _varint(body, at)
            elif wire == 1:
                at += 8
            elif wire == 5:
                at += 4
            elif wire == 2:
                size, at = _varint(body, at)
                sizes[number] = sizes.get(number, 0) + size
                at += size
            else:
                break
    except ValueError:
        pass
    return sizes


def _too_big(what: str, size: int, limit: str, maximum: int) -> InvalidArgument:
    return InvalidArgument(
        f"{what} is {size} bytes; at most {maximum} ({limit})",
        reason="REQUEST_TOO_LARGE",
        metadata={"limit": limit, "max": str(maximum), "actual": str(size)},
    )


def check_body(method: str, body: bytes, limits: RequestLimits) -> None:
    """Refuses a prediction whose text input weighs more than the limit, naming it. (Every
    server refuses big listing, health and reflection requests: runtime.errors.)"""
    if method not in PREDICT_METHODS:
        return
    text = input_sizes(body).get(TEXT_GENERATION, 0)
    if text > limits.max_text_generation_bytes:
        raise _too_big(
            "text_generation",
            text,
            "limits.max_text_generation_bytes",
            limits.max_text_generation_bytes,
        )
