"""The SDK's request building (servemesh/requests.py): Python arguments to servemesh.v1
messages, and the mistakes it refuses before anything is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.response_format import JsonFormat
from runtime.textgen import GenerationLimits, Sampling, parse_generation
from servemesh.errors import InvalidArgument
from servemesh.requests import (
    build_request,
    chat_message,
    inference_value,
    response_format_message,
)
from servemesh.v1 import generation_pb2, inference_pb2
from servemesh.v1 import prediction_service_pb2 as pb

REQUEST_TYPES = pytest.mark.parametrize(
    "request_type", [pb.PredictRequest, pb.PredictStreamRequest], ids=["unary", "stream"]
)
PARAMETERS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "repeat_penalty")
USER, SYSTEM = generation_pb2.CHAT_ROLE_USER, generation_pb2.CHAT_ROLE_SYSTEM
ASSISTANT = generation_pb2.CHAT_ROLE_ASSISTANT


@REQUEST_TYPES
def test_a_prompt_is_raw_text_with_no_parameter_set(request_type: type) -> None:
    request = build_request(request_type, "m", prompt="Once upon", request_id="r1")
    assert type(request) is request_type
    assert (request.model, request.request_id) == ("m", "r1")
    assert request.WhichOneof("input") == "text_generation"
    generation = request.text_generation
    assert generation.WhichOneof("source") == "prompt"
    assert generation.prompt == "Once upon"
    assert [p for p in PARAMETERS if generation.parameters.HasField(p)] == []
    assert list(generation.parameters.stop) == []


def test_every_parameter_given_is_set_zeros_included() -> None:
    request = build_request(
        pb.PredictRequest,
        "m",
        prompt="p",
        max_tokens=0,
        temperature=0.0,
        top_p=0.5,
        top_k=0,
        stop=("\n", "END"),
        seed=0,
        repeat_penalty=1.25,
    )
    parameters = request.text_generation.parameters
    assert [p for p in PARAMETERS if parameters.HasField(p)] == list(PARAMETERS)
    assert parameters == generation_pb2.GenerationParameters(
        max_tokens=0,
        temperature=0,
        top_p=0.5,
        top_k=0,
        stop=["\n", "END"],
        seed=0,
        repeat_penalty=1.25,
    )


@REQUEST_TYPES
def test_a_message_is_a_user_turn_after_an_optional_system_turn(request_type: type) -> None:
    request = build_request(request_type, "m", "Hi", max_tokens=3)
    assert list(request.text_generation.chat.messages) == [
        generation_pb2.ChatMessage(role=USER, content="Hi")
    ]
    assert request.text_generation.parameters.max_tokens == 3
    request = build_request(request_type, "m", "Hi", system="Be brief.")
    assert list(request.text_generation.chat.messages) == [
        generation_pb2.ChatMessage(role=SYSTEM, content="Be brief."),
        generation_pb2.ChatMessage(role=USER, content="Hi"),
    ]


def test_messages_as_mappings_or_pairs() -> None:
    request = build_request(
        pb.PredictRequest,
        "m",
        messages=[
            {"role": "system", "content": "s"},
            ("user", "u"),
            {"role": "assistant", "content": "a", "name": "ignored"},
        ],
    )
    assert request.text_generation.WhichOneof("source") == "chat"
    assert list(request.text_generation.chat.messages) == [
        generation_pb2.ChatMessage(role=SYSTEM, content="s"),
        generation_pb2.ChatMessage(role=USER, content="u"),
        generation_pb2.ChatMessage(role=ASSISTANT, content="a"),
    ]


def test_an_empty_conversation_is_still_a_chat_for_the_server_to_refuse() -> None:
    request = build_request(pb.PredictRequest, "m", messages=[])
    assert request.text_generation.WhichOneof("source") == "chat"
    assert len(request.text_generation.chat.messages) == 0


def test_an_empty_prompt_is_sent_for_the_server_to_refuse() -> None:
    request = build_request(pb.PredictRequest, "m", prompt="")
    assert request.text_generation.WhichOneof("source") == "prompt"
    assert request.text_generation.prompt == ""


@REQUEST_TYPES
def test_inputs_by_kind(request_type: type) -> None:
    tensor = inference_pb2.Tensor(dtype=inference_pb2.DATA_TYPE_FP32, shape=[1], raw_data=b"1234")
    request = build_request(
        request_type, "m", inputs={"image": b"\x89PNG", "top_k": "3", "x": tensor}
    )
    assert request.WhichOneof("input") == "inference"
    assert dict(request.inference.inputs) == {
        "image": inference_pb2.InferenceValue(data=b"\x89PNG"),
        "top_k": inference_pb2.InferenceValue(text="3"),
        "x": inference_pb2.InferenceValue(tensor=tensor),
    }


def test_inference_value_kinds() -> None:
    assert inference_value(b"").WhichOneof("kind") == "data"
    assert inference_value("").WhichOneof("kind") == "text"
    assert inference_value(inference_pb2.Tensor()).WhichOneof("kind") == "tensor"


@pytest.mark.parametrize(
    ("arguments", "got"),
    [
        pytest.param({}, "none", id="none"),
        pytest.param({"prompt": "p", "messages": []}, "prompt, messages", id="two"),
        pytest.param({"message": "m", "inputs": {}}, "message, inputs", id="message-and-inputs"),
        pytest.param(
            {"message": "m", "prompt": "p", "messages": [], "inputs": {}},
            "message, prompt, messages, inputs",
            id="all",
        ),
    ],
)
def test_exactly_one_input(arguments: dict[str, Any], got: str) -> None:
    message = arguments.pop("message", None)
    with pytest.raises(InvalidArgument) as caught:
        build_request(pb.PredictRequest, "m", message, **arguments)
    assert caught.value.message == (
        "give exactly one of a message (the positional argument), prompt=, messages= or "
        f"inputs= (got {got})"
    )


@pytest.mark.parametrize("other", [{"prompt": "p"}, {"messages": [("user", "u")]}])
def test_system_goes_only_with_a_message(other: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_request(pb.PredictRequest, "m", system="s", **other)
    assert caught.value.message == "system= goes with a message; put it in messages= otherwise"


@pytest.mark.parametrize("message", [{"role": "bot", "content": "x"}, ("USER", "x"), ("", "x")])
def test_an_unknown_role_is_refused_with_the_known_ones(message: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        chat_message(message)
    role = message["role"] if isinstance(message, dict) else message[0]
    assert caught.value.message == (
        f"unknown chat role {role!r}; use one of ['assistant', 'system', 'user']"
    )


def test_what_the_sdk_builds_is_what_the_server_reads() -> None:
    """The SDK's request through the servers' own check (runtime/textgen.py)."""
    limits = GenerationLimits(context_length=100, max_tokens=50, default_max_tokens=16)
    request = build_request(
        pb.PredictStreamRequest, "m", "Hi", system="Be brief.", temperature=0, stop=["\n"]
    )
    spec = parse_generation(request.text_generation, limits)
    assert spec.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert spec.sampling == Sampling(temperature=0.0)
    assert (spec.prompt, spec.max_tokens, spec.stop) == (None, None, ("\n",))


# --- response_format ---

SCHEMA = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "string"}}}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "text"}, generation_pb2.ResponseFormat(text=generation_pb2.ResponseFormatText())),
        (
            {"type": "json_object"},
            generation_pb2.ResponseFormat(json_object=generation_pb2.ResponseFormatJsonObject()),
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "pair",
                    "description": "d",
                    "schema": SCHEMA,
                    "strict": True,
                },
            },
            generation_pb2.ResponseFormat(
                json_schema=generation_pb2.ResponseFormatJsonSchema(
                    name="pair", description="d", schema=json.dumps(SCHEMA)
                )
            ),
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": '{"type": "string"}'}},
            generation_pb2.ResponseFormat(
                json_schema=generation_pb2.ResponseFormatJsonSchema(schema='{"type": "string"}')
            ),
        ),
    ],
    ids=["text", "json_object", "json_schema", "schema-as-text"],
)
@REQUEST_TYPES
def test_response_format_in_openais_form(
    request_type: type, given: dict[str, Any], expected: generation_pb2.ResponseFormat
) -> None:
    request = build_request(request_type, "m", "Hi", response_format=given)
    assert request.text_generation.parameters.response_format == expected
    again = build_request(request_type, "m", "Hi", response_format=expected)
    assert again.text_generation.parameters.response_format == expected


def test_a_schema_keeps_its_key_order_and_unicode() -> None:
    schema = {"properties": {"z": {}, "a": {"description": "é"}}}
    fmt = response_format_message({"type": "json_schema", "json_schema": {"schema": schema}})
    assert fmt.json_schema.schema == '{"properties": {"z": {}, "a": {"description": "é"}}}'


def test_no_response_format_leaves_the_field_unset() -> None:
    request = build_request(pb.PredictRequest, "m", "Hi")
    assert not request.text_generation.parameters.HasField("response_format")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"type": "xml"}, "response_format type 'xml': use 'text', 'json_object' or 'json_schema'"),
        ({"type": "json_object", "schema": {}}, "response_format: unknown keys ['schema']"),
        ({"type": "json_schema"}, 'response_format of type "json_schema" needs "json_schema"'),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format.json_schema needs a schema",
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {}, "format": 1}},
            "response_format.json_schema: unknown keys ['format']",
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {"const": float("nan")}}},
            "response_format.json_schema.schema: Out of range float values",
        ),
        ("json_object", "response_format must be a dict such as {'type': 'json_object'}"),
    ],
)
def test_a_malformed_response_format_is_refused_before_sending(given: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        response_format_message(given)
    assert caught.value.message.startswith(message)


def test_response_format_goes_with_text_not_inputs() -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_request(pb.PredictRequest, "m", inputs={"x": "y"}, response_format={"type": "text"})
    assert caught.value.message.startswith("response_format: generation parameters go with")


def test_the_server_reads_the_sdks_schema_as_given() -> None:
    limits = GenerationLimits(context_length=100, max_tokens=50, default_max_tokens=16)
    request = build_request(
        pb.PredictRequest,
        "m",
        "Hi",
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}},
    )
    spec = parse_generation(request.text_generation, limits)
    assert spec.response_format == JsonFormat(SCHEMA, "n")
    assert list(spec.response_format.schema["properties"]) == ["b", "a"]
