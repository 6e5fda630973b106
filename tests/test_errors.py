"""Bad requests get the right status code and a useful message, and the servers keep serving."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from servemesh import Client, InvalidArgument, NotFound, ServemeshError
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc
from tests.servers import MODEL

BAD_GENERATIONS = [
    pytest.param({"prompt": ""}, "text_generation.prompt is empty", id="empty-prompt"),
    pytest.param({"messages": []}, "chat.messages is empty", id="empty-chat"),
    pytest.param(
        {"prompt": "hi", "temperature": -0.5}, "temperature is -0.5", id="negative-temperature"
    ),
    pytest.param({"prompt": "hi", "max_tokens": 5000}, "between 1 and 1024", id="max-tokens"),
    pytest.param({"prompt": "hi", "max_tokens": 0}, "between 1 and 1024", id="zero-max-tokens"),
    pytest.param({"prompt": "hi", "top_p": 1.5}, "top_p is 1.5", id="top-p"),
    pytest.param({"prompt": "hi", "repeat_penalty": 0.0}, "repeat_penalty", id="repeat-penalty"),
    pytest.param({"prompt": "hi", "stop": [""]}, "each must have 1 to", id="empty-stop"),
    pytest.param({"prompt": "hi", "stop": ["a"] * 9}, "at most 8", id="too-many-stops"),
    pytest.param({"prompt": "word " * 2100}, "the context holds 2048", id="prompt-too-long"),
    pytest.param(
        {"prompt": "word " * 1500, "max_tokens": 1000}, "must fit the context", id="no-room"
    ),
    pytest.param({"inputs": {"x": b"1"}}, "give text_generation", id="named-inputs"),
]


def _call(client: Client, streaming: bool, model: str = MODEL, **kwargs: Any) -> None:
    if streaming:
        list(client.predict_stream(model, **kwargs))
    else:
        client.predict(model, **kwargs)


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize(("kwargs", "message"), BAD_GENERATIONS)
def test_bad_parameters_are_invalid_argument(
    client: Client, streaming: bool, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _call(client, streaming, **kwargs)
    assert message in caught.value.message
    assert caught.value.reason in {
        "INVALID_PARAMETER",
        "PROMPT_TOO_LONG",
        "CONTEXT_OVERFLOW",
        "UNSUPPORTED_INPUT",
    }
    assert client.predict(MODEL, prompt="Hello", max_tokens=2).usage.completion_tokens >= 1


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "stream"])
def test_unknown_model_is_not_found_and_names_the_models(client: Client, streaming: bool) -> None:
    with pytest.raises(NotFound) as caught:
        _call(client, streaming, model="gpt-9", prompt="hi")
    assert "gpt-9" in caught.value.message and MODEL in caught.value.message
    assert caught.value.reason == "MODEL_NOT_FOUND"
    assert caught.value.metadata == {"model": "gpt-9"}


def test_empty_model_name_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="model is empty"):
        client.predict("", prompt="hi")
    with pytest.raises(NotFound):
        client.get_model("gpt-9")


def test_backend_errors_pass_through_the_gateway_unchanged(mesh) -> None:
    """The same bad call gives the same code, message and ErrorInfo at both servers."""
    seen = []
    for address in (mesh.gateway.address, mesh.predictor.address):
        with Client(address) as c, pytest.raises(ServemeshError) as caught:
            c.predict(MODEL, prompt="hi", temperature=-1)
        seen.append(
            (type(caught.value), caught.value.message, caught.value.reason, caught.value.metadata)
        )
    assert seen[0] == seen[1]
    assert seen[0][0] is InvalidArgument


@pytest.mark.parametrize("via", ["gateway", "predictor"])
@pytest.mark.parametrize("model", [MODEL, "all-minilm-l6-v2"])
def test_a_request_without_input_says_so(mesh, via: str, model: str) -> None:
    """Not "... not named inference inputs": the request named nothing at all."""
    if via == "predictor" and model != MODEL:
        pytest.skip("the predictor serves only the llama model")
    address = mesh.gateway.address if via == "gateway" else mesh.predictor.address
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PredictionServiceStub(channel)
        for call in (stub.Predict, lambda r, **kw: list(stub.PredictStream(r, **kw))):
            request_type = pb.PredictRequest if call is stub.Predict else pb.PredictStreamRequest
            with pytest.raises(grpc.RpcError) as caught:
                call(request_type(model=model), timeout=30)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "gives no input" in caught.value.details()
            assert "named inference inputs" not in caught.value.details()
