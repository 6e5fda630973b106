"""gateway.relay: fields appended to a message's bytes parse as if they had been set."""

from __future__ import annotations

import pytest

from gateway.relay import (
    REQUEST_ID,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    received_predict,
    serialized,
    string_field,
)
from servemesh.v1 import inference_pb2 as inf
from servemesh.v1 import prediction_service_pb2 as pb


@pytest.mark.parametrize("value", ["", "m", "é-model", "x" * 200, "y" * 20000])
def test_an_appended_string_field_overrides_the_one_in_the_bytes(value: str) -> None:
    request = pb.PredictRequest(model="public", request_id="")
    request.inference.inputs["text"].text = "hello"
    body = request.SerializeToString()
    parsed = pb.PredictRequest.FromString(
        body + string_field(REQUEST_MODEL, value) + string_field(REQUEST_ID, "id-1")
    )
    request.model, request.request_id = value, "id-1"
    assert parsed == request


@pytest.mark.parametrize("message", [pb.PredictResponse, pb.PredictStreamResponse])
def test_an_answer_takes_its_public_model_name(message: type[pb.PredictResponse]) -> None:
    answer = message(request_id="r", model="backend-name")
    parsed = message.FromString(answer.SerializeToString() + string_field(RESPONSE_MODEL, "pub"))
    assert parsed.model == "pub" and parsed.request_id == "r"
    assert message.FromString(string_field(RESPONSE_MODEL, "pub")).model == "pub"  # empty answer


def test_a_received_request_keeps_its_bytes_and_serializing_passes_bytes_through() -> None:
    request = pb.PredictRequest(
        model="m", inference=inf.InferenceInput(inputs={"t": inf.InferenceValue(text="x")})
    )
    body = request.SerializeToString()
    received = received_predict(body)
    assert received.message == request and received.body is body
    assert serialized(body) is body
    assert serialized(request) == body
