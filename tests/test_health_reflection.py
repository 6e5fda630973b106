"""grpc.health.v1 and server reflection: what grpcurl and Kubernetes probes rely on."""

from __future__ import annotations

import json
import subprocess

import pytest

from servemesh import Client, NotFound, Unavailable
from tests.servers import BIN, MODEL, gateway, health_status, llama_predictor, mesh_config, wait_for


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "service",
    [
        "",
        "servemesh.v1.PredictionService",
        "all-backends",
        "backend/llama",
        "backend/torchserve",
        f"model/{MODEL}",
        "model/efficientnet-lite0",
    ],
)
def test_gateway_health_is_serving(mesh, service: str) -> None:
    assert health_status(mesh.gateway.address, service) == "SERVING"


def test_unknown_health_name_is_not_found_and_names_the_known_ones(mesh) -> None:
    assert health_status(mesh.gateway.address, "model/nope") == "NOT_FOUND"
    with Client(mesh.gateway.address) as client, pytest.raises(NotFound) as caught:
        client.health("model/nope")
    message = caught.value.message
    assert "'model/nope'" in message and f"'model/{MODEL}'" in message, message
    assert "'backend/torchserve'" in message and caught.value.reason == "UNKNOWN_HEALTH_SERVICE"


@pytest.mark.parametrize("target", ["gateway", "predictor"])
def test_grpcurl_lists_services_through_reflection(mesh, target: str) -> None:
    result = grpcurl(getattr(mesh, target).address, "list")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {
        "servemesh.v1.PredictionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    described = grpcurl(getattr(mesh, target).address, "describe", "servemesh.v1.PredictRequest")
    assert "text_generation" in described.stdout
    v1 = grpcurl(getattr(mesh, target).address, "describe", "grpc.reflection.v1.ServerReflection")
    assert "stream .grpc.reflection.v1.ServerReflectionRequest" in v1.stdout, v1.stderr


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_buf_curl_calls_through_either_reflection_protocol(mesh, protocol: str) -> None:
    """buf curl asks reflection v1 first; grpcio-reflection alone serves only v1alpha."""
    result = subprocess.run(
        [
            str(BIN / "buf"),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "--reflect-protocol",
            protocol,
            f"http://{mesh.gateway.address}/servemesh.v1.PredictionService/ListModels",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = [m["name"] for m in json.loads(result.stdout)["models"]]
    assert MODEL in names and "efficientnet-lite0" in names


def test_grpcurl_predict_with_json_and_no_proto_files(mesh) -> None:
    request = {
        "model": MODEL,
        "text_generation": {
            "chat": {"messages": [{"role": "CHAT_ROLE_USER", "content": "Say hello."}]},
            "parameters": {"max_tokens": 16, "temperature": 0},
        },
    }
    result = grpcurl(
        "-d", json.dumps(request), mesh.gateway.address, "servemesh.v1.PredictionService/Predict"
    )
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["model"] == MODEL
    assert response["text_generation"]["text"].strip()
    assert response["text_generation"]["finish_reason"].startswith("FINISH_REASON_")
    streamed = grpcurl(
        "-d",
        json.dumps(request),
        mesh.gateway.address,
        "servemesh.v1.PredictionService/PredictStream",
    )
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.count('"text_delta"') >= 2


def test_grpcurl_error_shows_code_and_error_info(mesh) -> None:
    request = {"model": "nope", "text_generation": {"prompt": "hi"}}
    result = grpcurl(
        "-d", json.dumps(request), mesh.gateway.address, "servemesh.v1.PredictionService/Predict"
    )
    assert result.returncode != 0
    assert "NotFound" in result.stderr and "MODEL_NOT_FOUND" in result.stderr


def test_one_backend_down_leaves_the_gateway_serving_the_others(tmp_path) -> None:
    """A probe on the gateway's own health must not take the whole front door out of its
    load balancer because one backend failed: the other backend's models still answer."""
    kept, _ = llama_predictor(tmp_path, "kept")
    lost, _ = llama_predictor(tmp_path, "lost")
    config = "\n".join(
        f'[backends.{name}]\nkind = "servemesh"\ntarget = "{p.address}"\n'
        f'[models.{name}]\nbackend = "{name}"\nbackend_model = "{MODEL}"\n'
        for name, p in (("kept", kept), ("lost", lost))
    )
    front = gateway(tmp_path, config, name="two-backend-gateway")
    try:
        kept.start()
        lost.start()
        front.start(needs=(kept, lost))
        assert health_status(front.address, "all-backends") == "SERVING"
        lost.stop()
        wait_for(
            lambda: health_status(front.address, "backend/lost") == "NOT_SERVING",
            10,
            "the lost backend's health NOT_SERVING",
        )
        assert health_status(front.address, "model/lost") == "NOT_SERVING"
        assert health_status(front.address, "all-backends") == "NOT_SERVING"
        for name in ("", "servemesh.v1.PredictionService", "backend/kept", "model/kept"):
            assert health_status(front.address, name) == "SERVING", name
        with Client(front.address) as c:
            assert c.predict("kept", prompt="hi", max_tokens=2).usage.completion_tokens == 2
        kept.stop()
        wait_for(
            lambda: health_status(front.address) == "NOT_SERVING",
            10,
            "the gateway NOT_SERVING once no backend serves",
        )
    finally:
        front.stop()
        kept.stop()
        lost.stop()


def test_gateway_health_follows_its_backend(tmp_path) -> None:
    predictor, _ = llama_predictor(tmp_path, "followed")
    predictor.start()
    config = mesh_config(predictor.address).replace("backends.llama", "backends.followed")
    config = config.replace('backend = "llama"', 'backend = "followed"')
    front = gateway(tmp_path, config, name="following-gateway")
    front.start()
    try:
        names = ["", "backend/followed", f"model/{MODEL}"]
        assert all(health_status(front.address, n) == "SERVING" for n in names)
        predictor.stop()
        wait_for(
            lambda: all(health_status(front.address, n) == "NOT_SERVING" for n in names),
            10,
            "gateway health NOT_SERVING after its backend stopped",
        )
        with Client(front.address, max_attempts=1) as c, pytest.raises(Unavailable):
            c.predict(MODEL, prompt="hi", max_tokens=2)
        with Client(front.address) as c:
            (model,) = c.list_models()
            assert not model.ready and "did not answer" in model.description
        predictor.start()  # the same port again
        wait_for(
            lambda: all(health_status(front.address, n) == "SERVING" for n in names),
            15,
            "gateway health SERVING again after its backend came back",
        )
        with Client(front.address) as c:
            assert c.predict(MODEL, prompt="hi", max_tokens=2).usage.completion_tokens >= 1
    finally:
        front.stop()
        predictor.stop()


def test_predictor_health_is_not_serving_while_it_drains(tmp_path) -> None:
    import signal

    # A grace long enough for the stream on a loaded CI machine: the predictor leaves as soon
    # as its last call ends, so a long grace costs nothing when the stream is quick.
    predictor, _ = llama_predictor(tmp_path, "draining", "--grace-s", "30")
    predictor.start()
    try:
        with Client(predictor.address) as c:
            stream = c.predict_stream(MODEL, prompt="1, 2, 3,", max_tokens=30, temperature=0)
            next(stream)
            predictor.signal(signal.SIGTERM)
            wait_for(lambda: health_status(predictor.address) != "SERVING", 5, "draining")
            rest = list(stream)
        assert rest[-1].finish_reason == "length", "the call in flight finishes within the grace"
        assert predictor.process.wait(timeout=10) == 0
    finally:
        predictor.stop()


def test_gateway_drains_a_stream_on_sigterm_and_refuses_new_calls(tmp_path) -> None:
    import signal

    predictor, _ = llama_predictor(tmp_path, "behind-draining")
    front = gateway(tmp_path, mesh_config(predictor.address), "draining-gw")
    try:
        predictor.start()
        front.start(needs=(predictor,))
        with Client(front.address, max_attempts=1) as c:
            stream = c.predict_stream(MODEL, prompt="1, 2, 3,", max_tokens=30, temperature=0)
            next(stream)
            front.signal(signal.SIGTERM)
            wait_for(lambda: health_status(front.address) != "SERVING", 5, "draining")
            with pytest.raises(Unavailable):
                c.predict(MODEL, prompt="hi", max_tokens=2)
            rest = list(stream)
        assert rest[-1].finish_reason == "length", "the stream in flight finished"
        assert front.process.wait(timeout=10) == 0
    finally:
        front.stop()
        predictor.stop()
