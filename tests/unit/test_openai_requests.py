"""OpenAI request bodies translated into servemesh.v1 requests, and refusals naming the field."""

from __future__ import annotations

import base64
import struct

import pytest

from gateway.openai_http import requests
from gateway.openai_http.errors import HttpError, from_error
from gateway.openai_http.responses import embedding_list
from servemesh.errors import NotFound, ResourceExhausted
from servemesh.v1 import generation_pb2 as gen


def test_a_chat_becomes_a_chat_conversation_with_its_parameters() -> None:
    asked = requests.chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
                },
            ],
            "max_completion_tokens": 7,
            "temperature": 0,
            "top_p": 0.5,
            "top_k": 4,
            "seed": -1,
            "draft_tokens": 8,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "ignored",
        }
    )
    tg = asked.request.text_generation
    assert [(m.role, m.content) for m in tg.chat.messages] == [
        (gen.CHAT_ROLE_SYSTEM, "Be brief."),
        (gen.CHAT_ROLE_USER, "Hi there"),
    ]
    p = tg.parameters
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, list(p.stop)) == (7, 0, 0.5, 4, ["END"])
    assert p.seed == 2**64 - 1
    assert p.draft_tokens == 8
    assert asked.stream and asked.include_usage


def test_completions_default_to_openais_sixteen_tokens() -> None:
    asked = requests.completion_request({"model": "m", "prompt": ["Once"]})
    assert asked.request.text_generation.prompt == "Once"
    assert asked.request.text_generation.parameters.max_tokens == 16
    chat = requests.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert not chat.request.text_generation.parameters.HasField("max_tokens")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "draft_tokens": -1},
            "draft_tokens",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True},
            "logprobs",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}, "tools"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ],
)
def test_a_bad_chat_field_is_refused_by_name(body: dict, param: str) -> None:
    with pytest.raises(HttpError) as caught:
        requests.chat_request(body)
    assert caught.value.status == 400 and caught.value.param == param


def test_token_arrays_and_several_prompts_are_refused() -> None:
    for prompt in ([1, 2, 3], ["a", "b"], None):
        with pytest.raises(HttpError) as caught:
            requests.completion_request({"model": "m", "prompt": prompt})
        assert caught.value.param == "prompt"


def test_embedding_inputs_are_capped_and_the_limit_named() -> None:
    assert requests.embeddings_request({"model": "e", "input": "x"}, 2).texts == ["x"]
    with pytest.raises(HttpError) as caught:
        requests.embeddings_request({"model": "e", "input": ["a", "b", "c"]}, 2)
    assert "--http-max-embedding-inputs" in caught.value.message
    with pytest.raises(HttpError):
        requests.embeddings_request({"model": "e", "input": "x", "dimensions": 8}, 2)


def test_base64_embeddings_are_little_endian_float32() -> None:
    body = embedding_list("e", [[0.5, -1.0]], base64_encoded=True)
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)


def test_grpc_codes_become_http_statuses_and_reasons_codes() -> None:
    missing = from_error(NotFound("no such model", reason="MODEL_NOT_FOUND"))
    assert (missing.status, missing.code, missing.body()["error"]["type"]) == (
        404,
        "model_not_found",
        "not_found_error",
    )
    full = from_error(ResourceExhausted("queue full", reason="QUEUE_FULL"))
    assert (full.status, full.body()["error"]["type"]) == (429, "rate_limit_error")
    assert from_error(RuntimeError("boom")).status == 500


def test_response_format_is_openais_form_on_the_servemesh_field() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}
    asked = requests.chat_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "thing", "schema": schema, "strict": True},
            },
        }
    )
    format_ = asked.request.text_generation.parameters.response_format
    assert format_.json_schema.name == "thing"
    assert (
        format_.json_schema.schema
        == '{"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}'
    )
    json_mode = requests.completion_request(
        {"model": "m", "prompt": "x", "response_format": {"type": "json_object"}}
    )
    assert json_mode.request.text_generation.parameters.response_format.HasField("json_object")
    with pytest.raises(HttpError) as caught:
        requests.completion_request(
            {"model": "m", "prompt": "x", "response_format": {"type": "yaml"}}
        )
    assert caught.value.param == "response_format"
