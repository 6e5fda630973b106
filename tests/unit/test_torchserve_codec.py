"""TorchServe's codec and error mapping, without TorchServe: exact messages in, exact out."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from gateway.backends.torchserve.codec import (
    REQUEST_FIELDS,
    inference_output,
    text_as_one_chunk,
    text_chunk,
    text_output,
    torchserve_input,
)
from gateway.backends.torchserve.errors import torchserve_error
from gateway.backends.torchserve.options import Task, TorchServeModel
from servemesh.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServemeshError,
    Unavailable,
)
from servemesh.v1 import generation_pb2, inference_pb2
from servemesh.v1 import prediction_service_pb2 as pb

REQUEST_TYPES = [pb.PredictRequest, pb.PredictStreamRequest]
TEXT = TorchServeModel(task=Task.TEXT_GENERATION, context_length=1024, max_tokens=300)
JAVA_LINE = "\norg.pytorch.serve.archive.model.ModelNotFoundException: Model not found\n\tat ..."


# --- the error mapping: one test per row ---


def rpc_error(code: grpc.StatusCode, details: str | None) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def mapped(code: grpc.StatusCode, details: str | None, model: str = "m") -> ServemeshError:
    return torchserve_error(rpc_error(code, details), model)


def assert_error(
    error: ServemeshError, kind: type[ServemeshError], message: str, reason: str, **metadata: str
) -> None:
    assert type(error) is kind
    assert (error.message, error.reason, error.metadata) == (message, reason, metadata)


def test_model_not_found_is_not_found_without_the_java_line() -> None:
    error = mapped(grpc.StatusCode.INTERNAL, "Model not found in model store: ghost" + JAVA_LINE)
    assert_error(
        error,
        NotFound,
        "model 'm' is not registered in TorchServe (Model not found in model store: ghost)",
        "MODEL_NOT_FOUND",
        model="m",
    )


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED]
)
def test_a_refused_token_is_the_gateways_fault(code: grpc.StatusCode) -> None:
    details = "Token Authorization failed. Token either incorrect, expired, or not provided"
    error = mapped(code, details)
    assert_error(
        error,
        Internal,
        "TorchServe refused the gateway's token (Token Authorization failed. Token either "
        "incorrect, expired, or not provided); check the backend's key_file",
        "BACKEND_AUTH_FAILED",
    )


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_a_worker_that_died_is_unavailable(code: grpc.StatusCode) -> None:
    error = mapped(code, "Worker died.", model="crash-test")
    assert_error(
        error,
        Unavailable,
        "TorchServe's worker for model 'crash-test' died while it ran this request; TorchServe "
        "restarts it, so retry after a back-off (TorchServe: Worker died.)",
        "BACKEND_WORKER_DIED",
        model="crash-test",
        torchserve_code=code.name,
    )


def test_no_worker_is_unavailable() -> None:
    details = 'Model "m" has no worker to serve inference request. Please use scale workers API.'
    assert_error(
        mapped(grpc.StatusCode.INTERNAL, details),
        Unavailable,
        f"TorchServe: {details}",
        "BACKEND_WORKER_UNAVAILABLE",
    )


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.NOT_FOUND, NotFound),  # not INTERNAL's "Model not found" row
        (grpc.StatusCode.INTERNAL, Internal),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
    ],
)
def test_any_other_code_passes_through_with_torchserves_message(
    code: grpc.StatusCode, kind: type[ServemeshError]
) -> None:
    assert_error(mapped(code, "queue is full"), kind, "TorchServe: queue is full", "BACKEND_ERROR")


def test_the_java_exception_line_is_dropped_and_no_details_is_an_empty_message() -> None:
    error = mapped(grpc.StatusCode.INVALID_ARGUMENT, "  bad input " + JAVA_LINE)
    assert error.message == "TorchServe: bad input"
    assert mapped(grpc.StatusCode.ABORTED, None).message == "TorchServe: "


# --- requests: either request message, as it is ---


def test_both_request_messages_have_exactly_the_fields_the_codec_reads() -> None:
    """Fails when a field is added to one request message, or to both without the codec and
    the backend reading it: the two calls must not drift apart silently."""

    def shape(message: Any) -> dict[str, tuple[int, int, str | None, str | None]]:
        return {
            f.name: (
                f.number,
                f.type,
                f.message_type.full_name if f.type == FieldDescriptor.TYPE_MESSAGE else None,
                f.containing_oneof.name if f.containing_oneof else None,
            )
            for f in message.DESCRIPTOR.fields
        }

    assert shape(pb.PredictRequest) == shape(pb.PredictStreamRequest)
    assert sorted(shape(pb.PredictRequest)) == sorted(REQUEST_FIELDS)


def image_request(kind: type, **inputs: inference_pb2.InferenceValue) -> Any:
    return kind(model="m", inference=inference_pb2.InferenceInput(inputs=inputs))


@pytest.mark.parametrize("kind", REQUEST_TYPES)
@pytest.mark.parametrize("task", [Task.IMAGE_CLASSIFICATION, Task.EMBEDDING, Task.GENERIC])
def test_named_inputs_become_torchserves_input_map(kind: type, task: Task) -> None:
    request = image_request(
        kind,
        image=inference_pb2.InferenceValue(data=b"\xff\xd8jpeg"),
        top_k=inference_pb2.InferenceValue(text="3"),
        text=inference_pb2.InferenceValue(text="héllo"),
    )
    assert torchserve_input(request, TorchServeModel(task=task), stream=False) == {
        "image": b"\xff\xd8jpeg",
        "top_k": b"3",
        "text": "héllo".encode(),
    }


def test_a_tensor_input_is_refused_by_name() -> None:
    tensor = inference_pb2.InferenceValue(tensor=inference_pb2.Tensor())
    with pytest.raises(InvalidArgument) as caught:
        torchserve_input(image_request(pb.PredictRequest, t=tensor), TorchServeModel(), False)
    assert caught.value.message == (
        "input 't' is a tensor; TorchServe models take bytes (data) or text inputs"
    )
    assert (caught.value.reason, caught.value.metadata) == ("UNSUPPORTED_INPUT", {"input": "t"})


@pytest.mark.parametrize(
    ("task", "example"),
    [
        (Task.IMAGE_CLASSIFICATION, '"image" with the encoded image bytes'),
        (Task.EMBEDDING, '"text" with the sentence'),
        (Task.GENERIC, "the names its handler reads"),
    ],
)
def test_a_named_inputs_model_refuses_text_generation(task: Task, example: str) -> None:
    request = pb.PredictRequest(
        model="m", text_generation=generation_pb2.TextGenerationInput(prompt="hi")
    )
    with pytest.raises(InvalidArgument) as caught:
        torchserve_input(request, TorchServeModel(task=task), stream=False)
    assert caught.value.message == (
        f"model 'm' takes named inputs (inference.inputs), such as {example}"
    )
    assert caught.value.reason == "UNSUPPORTED_INPUT"


def test_a_text_model_refuses_named_inputs() -> None:
    request = image_request(pb.PredictStreamRequest, text=inference_pb2.InferenceValue(text="hi"))
    with pytest.raises(InvalidArgument) as caught:
        torchserve_input(request, TEXT, stream=True)
    assert caught.value.message == (
        "model 'm' generates text: give text_generation (a prompt or chat messages), not named "
        "inference inputs"
    )


@pytest.mark.parametrize("kind", REQUEST_TYPES)
@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_becomes_the_handlers_json_with_every_default(kind: type, stream: bool) -> None:
    request = kind(model="m", text_generation=generation_pb2.TextGenerationInput(prompt="Hi"))
    ts_input = torchserve_input(request, TEXT, stream)
    assert list(ts_input) == ["request"]
    assert json.loads(ts_input["request"]) == {
        "stream": stream,
        "stop": [],
        "prompt": "Hi",
        "max_tokens": 256,  # min(256, the model's max_tokens) when the request names none
        "max_tokens_requested": False,
        "context_length": 1024,
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 40,
        "repeat_penalty": 1.0,
        "seed": None,
    }


def test_chat_and_every_parameter_go_to_the_handler() -> None:
    chat = generation_pb2.ChatConversation(
        messages=[
            generation_pb2.ChatMessage(role=generation_pb2.CHAT_ROLE_SYSTEM, content="Be brief."),
            generation_pb2.ChatMessage(role=generation_pb2.CHAT_ROLE_USER, content="Rivers?"),
        ]
    )
    parameters = generation_pb2.GenerationParameters(
        max_tokens=300,
        temperature=0.5,
        top_p=0.75,
        top_k=7,
        stop=["\n\n", "END"],
        seed=42,
        repeat_penalty=1.25,
    )
    request = pb.PredictStreamRequest(
        model="m",
        text_generation=generation_pb2.TextGenerationInput(chat=chat, parameters=parameters),
    )
    assert json.loads(torchserve_input(request, TEXT, stream=True)["request"]) == {
        "stream": True,
        "stop": ["\n\n", "END"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Rivers?"},
        ],
        "max_tokens": 300,
        "max_tokens_requested": True,
        "context_length": 1024,
        "temperature": 0.5,
        "top_p": 0.75,
        "top_k": 7,
        "repeat_penalty": 1.25,
        "seed": 42,
    }


def test_max_tokens_over_the_models_limit_is_refused_before_torchserve() -> None:
    parameters = generation_pb2.GenerationParameters(max_tokens=301)
    request = pb.PredictRequest(
        model="m",
        text_generation=generation_pb2.TextGenerationInput(prompt="Hi", parameters=parameters),
    )
    with pytest.raises(InvalidArgument, match=r"max_tokens is 301; it must be between 1 and 300"):
        torchserve_input(request, TEXT, stream=False)


# --- outputs ---


def test_a_handlers_json_object_becomes_named_outputs() -> None:
    prediction = json.dumps(
        {
            "classes": [
                {"label": "tabby", "score": 0.5, "index": 281},
                {"label": "Egyptian cat", "score": 0.25},
            ],
            "embedding": [0.5, -0.25],
            "batch_size": 4,
            "label": "cat",
            "extra": {"a": [1, 2]},
        }
    ).encode()
    assert inference_output(prediction) == inference_pb2.InferenceOutput(
        outputs={
            "classes": inference_pb2.InferenceValue(
                classification=inference_pb2.Classification(
                    classes=[
                        inference_pb2.ClassScore(label="tabby", score=0.5, index=281),
                        inference_pb2.ClassScore(label="Egyptian cat", score=0.25, index=0),
                    ]
                )
            ),
            "embedding": inference_pb2.InferenceValue(
                vector=inference_pb2.Vector(values=[0.5, -0.25])
            ),
            "batch_size": inference_pb2.InferenceValue(text="4"),
            "label": inference_pb2.InferenceValue(text="cat"),
            "extra": inference_pb2.InferenceValue(text='{"a": [1, 2]}'),
        }
    )


@pytest.mark.parametrize("prediction", [b"\x89PNG raw bytes", b"[1, 2]", b'"just text"'])
def test_an_answer_that_is_not_a_json_object_stays_bytes(prediction: bytes) -> None:
    assert inference_output(prediction) == inference_pb2.InferenceOutput(
        outputs={"output": inference_pb2.InferenceValue(data=prediction)}
    )


@pytest.mark.parametrize("convert", [inference_output, text_output])
def test_a_handlers_error_object_is_the_requests_fault(convert: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert(b'{"error": "not an image: cannot identify image file"}')
    assert caught.value.message == "not an image: cannot identify image file"
    assert caught.value.reason == "REFUSED_BY_HANDLER"


FINAL = {
    "text": "Paris.",
    "finish_reason": "eos_token",
    "usage": {"prompt_tokens": 12, "completion_tokens": 3},
}


def test_a_unary_text_answer() -> None:
    assert text_output(json.dumps(FINAL).encode()) == generation_pb2.TextGenerationOutput(
        text="Paris.",
        finish_reason=generation_pb2.FINISH_REASON_EOS_TOKEN,
        usage=generation_pb2.Usage(prompt_tokens=12, completion_tokens=3),
    )
    unknown = text_output(b'{"text": "x", "finish_reason": "tired"}')
    assert unknown.finish_reason == generation_pb2.FINISH_REASON_UNSPECIFIED


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("eos_token", generation_pb2.FINISH_REASON_EOS_TOKEN),
        ("length", generation_pb2.FINISH_REASON_LENGTH),
        ("stop_sequence", generation_pb2.FINISH_REASON_STOP_SEQUENCE),
    ],
)
def test_a_unary_text_answer_as_one_stream_message(reason: str, expected: int) -> None:
    response = pb.PredictStreamResponse(request_id="r", model="m")
    text_as_one_chunk(json.dumps({**FINAL, "finish_reason": reason}).encode(), response)
    assert response == pb.PredictStreamResponse(
        request_id="r",
        model="m",
        text_delta=generation_pb2.TextDelta(text="Paris.", token_count=3),
        finish_reason=expected,
        usage=generation_pb2.Usage(prompt_tokens=12, completion_tokens=3),
    )


def test_streamed_text_pieces_and_the_final_one() -> None:
    middle = pb.PredictStreamResponse()
    text_chunk(b'{"text": "Par", "token_count": 1}', middle)
    assert middle == pb.PredictStreamResponse(
        text_delta=generation_pb2.TextDelta(text="Par", token_count=1)
    )
    assert not middle.HasField("usage")
    last = pb.PredictStreamResponse()
    text_chunk(json.dumps({**FINAL, "text": "", "token_count": 0}).encode(), last)
    assert last == pb.PredictStreamResponse(
        text_delta=generation_pb2.TextDelta(),
        finish_reason=generation_pb2.FINISH_REASON_EOS_TOKEN,
        usage=generation_pb2.Usage(prompt_tokens=12, completion_tokens=3),
    )
