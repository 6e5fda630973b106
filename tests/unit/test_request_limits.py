"""The gateway's [limits] (gateway/limits.py), without a server: every limit accepts a request
at the limit and refuses one past it with INVALID_ARGUMENT naming the field and the limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import grpc
import pytest

from gateway.config import RequestLimits
from gateway.limits import check_request
from runtime.quoting import cut
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2, inference_pb2
from servemesh.v1 import prediction_service_pb2 as pb

# Small limits, so requests at and past each are small; each differs from the others, so a
# message that names the wrong limit's maximum fails.
LIMITS = RequestLimits(
    max_inputs=3,
    max_input_bytes=6,
    max_prompt_chars=10,
    max_chat_messages=4,
    max_stop_sequences=2,
    max_stop_sequence_chars=5,
)
REQUEST_TYPES = pytest.mark.parametrize(
    "request_type", [pb.PredictRequest, pb.PredictStreamRequest], ids=["unary", "stream"]
)
Build = Callable[[type], pb.PredictRequest | pb.PredictStreamRequest]


def inputs(values: dict[str, inference_pb2.InferenceValue]) -> Build:
    def build(request_type: type) -> pb.PredictRequest | pb.PredictStreamRequest:
        request = request_type(model="m")
        for name, value in values.items():
            request.inference.inputs[name].CopyFrom(value)
        return request

    return build


def generation(
    prompt: str | None = None, messages: list[str] | None = None, stop: list[str] = ()
) -> Build:
    def build(request_type: type) -> pb.PredictRequest | pb.PredictStreamRequest:
        text = generation_pb2.TextGenerationInput(
            parameters=generation_pb2.GenerationParameters(stop=list(stop))
        )
        if messages is not None:
            text.chat.SetInParent()
            for content in messages:
                text.chat.messages.add(role=generation_pb2.CHAT_ROLE_USER, content=content)
        else:
            text.prompt = prompt or "hi"
        return request_type(model="m", text_generation=text)

    return build


def data(size: int) -> inference_pb2.InferenceValue:
    return inference_pb2.InferenceValue(data=b"x" * size)


def text(value: str) -> inference_pb2.InferenceValue:
    return inference_pb2.InferenceValue(text=value)


def tensor(size: int) -> inference_pb2.InferenceValue:
    return inference_pb2.InferenceValue(
        tensor=inference_pb2.Tensor(
            dtype=inference_pb2.DATA_TYPE_UINT8, shape=[size], raw_data=b"\0" * size
        )
    )


# (limit, request at the limit, request one past it, field named, actual, unit in the message)
CASES = [
    pytest.param(
        "max_inputs",
        inputs({f"in{i}": data(1) for i in range(3)}),
        inputs({f"in{i}": data(1) for i in range(4)}),
        "inference.inputs",
        4,
        "inputs",
        id="max_inputs",
    ),
    pytest.param(
        "max_input_bytes",
        inputs({"image": data(6)}),
        inputs({"image": data(7)}),
        "inference.inputs['image']",
        7,
        "bytes",
        id="max_input_bytes-data",
    ),
    pytest.param(
        "max_input_bytes",
        inputs({"text": text("ééé")}),  # three characters, six bytes of UTF-8
        inputs({"text": text("éééa")}),
        "inference.inputs['text']",
        7,
        "bytes",
        id="max_input_bytes-text-in-utf8-bytes",
    ),
    pytest.param(
        "max_input_bytes",
        inputs({"t": tensor(6)}),
        inputs({"t": tensor(7)}),
        "inference.inputs['t']",
        7,
        "bytes",
        id="max_input_bytes-tensor",
    ),
    pytest.param(
        "max_prompt_chars",
        generation(prompt="é" * 10),  # characters, not bytes
        generation(prompt="é" * 11),
        "text_generation.prompt",
        11,
        "characters",
        id="max_prompt_chars-prompt",
    ),
    pytest.param(
        "max_prompt_chars",
        generation(messages=["abcd", "efg", "hij"]),
        generation(messages=["abcd", "efg", "hijk"]),
        "text_generation.chat.messages",
        11,
        "characters of content",
        id="max_prompt_chars-chat-content-summed",
    ),
    pytest.param(
        "max_chat_messages",
        generation(messages=["a"] * 4),
        generation(messages=["a"] * 5),
        "text_generation.chat.messages",
        5,
        "messages",
        id="max_chat_messages",
    ),
    pytest.param(
        "max_stop_sequences",
        generation(stop=["a", "b"]),
        generation(stop=["a", "b", "c"]),
        "text_generation.parameters.stop",
        3,
        "stop sequences",
        id="max_stop_sequences",
    ),
    pytest.param(
        "max_stop_sequence_chars",
        generation(stop=["a", "12345"]),
        generation(stop=["a", "123456"]),
        "text_generation.parameters.stop[1]",
        6,
        "characters",
        id="max_stop_sequence_chars",
    ),
    pytest.param(
        "max_stop_sequence_chars",
        generation(messages=["hi"], stop=["éééé", "12345"]),
        generation(messages=["hi"], stop=["éééééé"]),
        "text_generation.parameters.stop[0]",
        6,
        "characters",
        id="max_stop_sequence_chars-chat",
    ),
]


@REQUEST_TYPES
@pytest.mark.parametrize(("limit", "at", "past", "field", "actual", "unit"), CASES)
def test_at_the_limit_is_accepted_and_one_past_is_refused_naming_the_limit(
    request_type: type, limit: str, at: Build, past: Build, field: str, actual: int, unit: str
) -> None:
    check_request(at(request_type), LIMITS)  # raises nothing

    with pytest.raises(InvalidArgument) as caught:
        check_request(past(request_type), LIMITS)
    error = caught.value
    maximum = getattr(LIMITS, limit)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == f"{field} has {actual} {unit}; at most {maximum} (limits.{limit})"
    assert error.reason == "INVALID_PARAMETER"
    assert error.metadata == {
        "field": field,
        "limit": f"limits.{limit}",
        "max": str(maximum),
        "actual": str(actual),
    }


@REQUEST_TYPES
def test_a_request_without_an_input_is_refused(request_type: type) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_request(request_type(model="m"), LIMITS)
    assert caught.value.message == (
        "the request to model 'm' gives no input: set text_generation (a prompt or chat "
        "messages) or inference (named inputs); GetModel says which the model takes"
    )
    assert caught.value.reason == "INPUT_REQUIRED"


def test_the_default_limits_take_ordinary_requests() -> None:
    request = generation(messages=["a"] * 256, stop=["x" * 128] * 8)(pb.PredictRequest)
    check_request(request, RequestLimits())
    check_request(inputs({"image": data(8 * 1024 * 1024)})(pb.PredictRequest), RequestLimits())


def test_other_kinds_of_input_count_as_their_serialized_size() -> None:
    value = inference_pb2.InferenceValue(vector=inference_pb2.Vector(values=[1.0, 2.0]))
    # The value's tag and length (2 bytes), the Vector's own (2), then 2 floats of 4 bytes.
    assert value.ByteSize() == 12
    check_request(inputs({"v": value})(pb.PredictRequest), replace(LIMITS, max_input_bytes=12))
    with pytest.raises(InvalidArgument) as caught:
        check_request(inputs({"v": value})(pb.PredictRequest), replace(LIMITS, max_input_bytes=11))
    assert caught.value.message == (
        "inference.inputs['v'] has 12 bytes; at most 11 (limits.max_input_bytes)"
    )


def test_the_first_limit_exceeded_is_the_one_named() -> None:
    """Too many messages, too many characters and too many stop sequences at once: the
    message count is checked first."""
    request = generation(messages=["x" * 20] * 5, stop=["a", "b", "c"])(pb.PredictRequest)
    with pytest.raises(InvalidArgument) as caught:
        check_request(request, LIMITS)
    assert caught.value.metadata["limit"] == "limits.max_chat_messages"


def test_inputs_are_checked_in_name_order() -> None:
    request = inputs({"b": data(7), "a": data(8)})(pb.PredictRequest)
    with pytest.raises(InvalidArgument) as caught:
        check_request(request, LIMITS)
    assert caught.value.metadata["field"] == "inference.inputs['a']"


def test_a_long_input_name_is_cut_short_in_the_error() -> None:
    name = "n" * 100
    with pytest.raises(InvalidArgument) as caught:
        check_request(inputs({name: data(7)})(pb.PredictRequest), LIMITS)
    field = f"inference.inputs['{'n' * 64}...']"
    assert caught.value.metadata["field"] == field
    assert caught.value.message.startswith(f"{field} has 7 bytes;")


@pytest.mark.parametrize(
    ("name", "shown"), [("", ""), ("n" * 64, "n" * 64), ("n" * 65, "n" * 64 + "...")]
)
def test_cut(name: str, shown: str) -> None:
    assert cut(name) == shown


def schema_request(schema_bytes: int) -> pb.PredictRequest:
    """A request whose response_format holds a schema of `schema_bytes`; serialized, two tags
    and two lengths add 4 bytes to a small one."""
    fmt = generation_pb2.ResponseFormat(
        json_schema=generation_pb2.ResponseFormatJsonSchema(schema="x" * schema_bytes)
    )
    return pb.PredictRequest(
        model="m",
        text_generation=generation_pb2.TextGenerationInput(
            prompt="hi", parameters=generation_pb2.GenerationParameters(response_format=fmt)
        ),
    )


def test_a_response_format_is_bounded_by_its_serialized_size() -> None:
    limits = replace(LIMITS, max_response_format_bytes=104)
    assert schema_request(100).text_generation.parameters.response_format.ByteSize() == 104
    check_request(schema_request(100), limits)
    with pytest.raises(InvalidArgument) as caught:
        check_request(schema_request(101), limits)
    field = "text_generation.parameters.response_format"
    assert (
        caught.value.message
        == f"{field} has 105 bytes; at most 104 (limits.max_response_format_bytes)"
    )
    assert caught.value.metadata == {
        "field": field,
        "limit": "limits.max_response_format_bytes",
        "max": "104",
        "actual": "105",
    }
    assert RequestLimits().max_response_format_bytes == 65536
    at_default = schema_request(65528)  # lengths of 3 bytes each from 16 KiB on
    assert at_default.text_generation.parameters.response_format.ByteSize() == 65536
    check_request(at_default, RequestLimits())
