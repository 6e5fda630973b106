"""servemesh.v1 messages relayed as the bytes they came in, for backends that speak the same
contract: the gateway parses a request once (to route it and check its limits) but sends the
caller's own bytes on, and passes the backend's answers back without parsing them.

What the gateway rewrites (a request's `model` and missing `request_id`, an answer's `model`)
is appended to the bytes as one more field each. Protobuf's rule for a singular scalar field
that occurs twice is that the last one wins, so the receiver parses exactly the message that
setting the field would have given, for the cost of a bytes concatenation instead of a parse
and a serialization per message.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import Message

from servemesh.v1 import prediction_service_pb2 as pb

_LENGTH_DELIMITED = 2
_SERVICE = pb.DESCRIPTOR.services_by_name["PredictionService"].full_name
PREDICT_METHOD = f"/{_SERVICE}/Predict"
PREDICT_STREAM_METHOD = f"/{_SERVICE}/PredictStream"


def _number(message: type[Message], field: str) -> int:
    return message.DESCRIPTOR.fields_by_name[field].number


def _same_number(field: str, *messages: type[Message]) -> int:
    """The field's number, which must be the same in every one of `messages`: one encoder
    serves them all."""
    (number,) = {_number(m, field) for m in messages}
    return number


REQUEST_MODEL = _same_number("model", pb.PredictRequest, pb.PredictStreamRequest)
REQUEST_ID = _same_number("request_id", pb.PredictRequest, pb.PredictStreamRequest)
RESPONSE_MODEL = _same_number("model", pb.PredictResponse, pb.PredictStreamResponse)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string_field(number: int, value: str) -> bytes:
    """Field `number` set to `value`, encoded: appended to a message's bytes, it overrides
    that field when they are parsed."""
    data = value.encode()
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(data)) + data


class Received(NamedTuple):
    """A request as the servemesh.v1 door receives it: the parsed message, and its bytes."""

    message: pb.PredictRequest | pb.PredictStreamRequest
    body: bytes


def received_predict(body: bytes) -> Received:
    """The request deserializer of Predict; a body that does not parse raises DecodeError,
    which the error interceptor turns into INVALID_ARGUMENT (runtime.errors)."""
    return Received(pb.PredictRequest.FromString(body), body)


def received_predict_stream(body: bytes) -> Received:
    """The request deserializer of PredictStream."""
    return Received(pb.PredictStreamRequest.FromString(body), body)


def serialized(response: Message | bytes) -> bytes:
    """The response serializer of a door that answers with relayed bytes or with a message
    (from a backend of another kind)."""
    if isinstance(response, bytes):
        return response
    return response.SerializeToString()
