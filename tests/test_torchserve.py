"""TorchServe behind the gateway: real models, server-side batching, errors and tokens."""

from __future__ import annotations

import asyncio
import io
import json
import math
import subprocess
import tomllib

import grpc
import pytest
from google.protobuf import empty_pb2
from PIL import Image
from skimage import data

from servemesh import AsyncClient, Client, InvalidArgument, NotFound, Unavailable
from tests.servers import (
    BIN,
    ROOT,
    TORCHSERVE_MODELS,
    gateway,
    health_status,
    mesh_config,
    wait_for,
)
from torchserve_grpc import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def cat_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG")  # a public-domain photo of a cat
    return buffer.getvalue()


def ts_inference(mesh) -> inference_pb2_grpc.InferenceAPIsServiceStub:
    return inference_pb2_grpc.InferenceAPIsServiceStub(grpc.insecure_channel(mesh.torchserve.grpc))


def worker_pids(mesh, model: str) -> list[int]:
    stub = management_pb2_grpc.ManagementAPIsServiceStub(
        grpc.insecure_channel(mesh.torchserve.management)
    )
    key = mesh.torchserve.keys()["management"]
    msg = stub.DescribeModel(
        management_pb2.DescribeModelRequest(model_name=model),
        metadata=[("authorization", f"Bearer {key}")],
    ).msg
    return [int(w["pid"]) for v in json.loads(msg) for w in v["workers"] if w["status"] == "READY"]


def test_classifier_ranks_a_cat_photo_in_a_cat_class(client: Client, cat_jpeg: bytes) -> None:
    result = client.predict("efficientnet-lite0", inputs={"image": cat_jpeg, "top_k": "3"})
    classes = result.outputs["classes"]
    assert len(classes) == 3
    assert classes[0].index in CAT_CLASSES, classes
    assert "cat" in classes[0].label
    assert classes[0].score > 0.3 and classes == sorted(classes, key=lambda c: -c.score)


def test_embeddings_of_paraphrases_are_closer_than_of_unrelated_sentences(client: Client) -> None:
    sentences = [
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Quarterly revenue grew by eight percent.",
    ]
    a, b, c = (
        client.predict("all-minilm-l6-v2", inputs={"text": s}).outputs["embedding"]
        for s in sentences
    )
    assert len(a) == 384
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-3), "vectors are normalized"

    def cosine(u: list[float], v: list[float]) -> float:
        return sum(x * y for x, y in zip(u, v, strict=True))

    assert cosine(a, b) > 0.6 > cosine(a, c)


def test_text_model_streams_deltas_and_a_final_status(client: Client) -> None:
    args = dict(max_tokens=16, temperature=0)
    messages = [{"role": "user", "content": "Name three rivers."}]
    chunks = list(client.predict_stream("smollm2-135m-torch", messages=messages, **args))
    final = chunks[-1]
    assert sum(1 for c in chunks if c.text) >= 5, "tokens arrive as they are generated"
    assert final.finish_reason in {"length", "eos_token"} and final.usage is not None
    assert sum(c.token_count for c in chunks) == final.usage.completion_tokens
    unary = client.predict("smollm2-135m-torch", messages=messages, **args)
    assert unary.text == "".join(c.text for c in chunks)
    assert unary.usage == final.usage


def test_text_model_checks_parameters_like_the_llama_predictor(client: Client) -> None:
    for model in ("smollm2-135m-torch", "smollm2-135m-instruct"):
        with pytest.raises(InvalidArgument, match=r"temperature is -1\.0"):
            client.predict(model, "hi", temperature=-1)


async def test_concurrent_classifier_requests_are_batched(mesh, cat_jpeg: bytes) -> None:
    async with AsyncClient(mesh.gateway.address) as client:
        results = await asyncio.gather(
            *(client.predict("efficientnet-lite0", inputs={"image": cat_jpeg}) for _ in range(16))
        )
    sizes = [int(r.outputs["batch_size"]) for r in results]
    assert max(sizes) > 1, f"TorchServe formed batches of {sizes}"
    assert all(r.outputs["classes"][0].index in CAT_CLASSES for r in results)


async def test_a_bad_image_fails_alone_in_its_batch(mesh, cat_jpeg: bytes) -> None:
    async with AsyncClient(mesh.gateway.address, max_attempts=1) as client:
        calls = [client.predict("efficientnet-lite0", inputs={"image": cat_jpeg}) for _ in range(4)]
        calls.insert(2, client.predict("efficientnet-lite0", inputs={"image": b"not an image"}))
        results = await asyncio.gather(*calls, return_exceptions=True)
    bad = results.pop(2)
    assert isinstance(bad, InvalidArgument) and "not an image" in bad.message
    assert all(r.outputs["classes"][0].index in CAT_CLASSES for r in results)


def test_a_refusal_quoting_non_ascii_input_leaves_the_worker_alive(mesh, client, cat_jpeg) -> None:
    """TorchServe's worker frames a status phrase by its length in characters, so a refusal
    quoting what a caller sent (an input's name or value, beyond ASCII) desynchronized the
    frame and the frontend dropped the worker: UNAVAILABLE, "Worker died" (found by fuzzing)."""

    before = worker_pids(mesh, "efficientnet-lite0")
    with pytest.raises(InvalidArgument, match="top_k must be an integer") as caught:
        client.predict("efficientnet-lite0", inputs={"image": cat_jpeg, "top_k": "trois été 🦙"})
    assert "trois \u00e9t\u00e9" in caught.value.message  # the caller's text, as sent
    with pytest.raises(InvalidArgument, match="send the input as one of"):
        client.predict("efficientnet-lite0", inputs={"imagé": b"x", "über": b"y"})
    assert client.predict("efficientnet-lite0", inputs={"image": cat_jpeg}).outputs["classes"]
    assert worker_pids(mesh, "efficientnet-lite0") == before


def test_stream_of_a_non_streaming_model_is_one_message_and_the_worker_lives(
    mesh, client: Client, cat_jpeg: bytes
) -> None:
    before = worker_pids(mesh, "efficientnet-lite0")
    chunks = list(client.predict_stream("efficientnet-lite0", inputs={"image": cat_jpeg}))
    assert len(chunks) == 1
    assert chunks[0].outputs["classes"][0].index in CAT_CLASSES
    assert worker_pids(mesh, "efficientnet-lite0") == before, "the same worker still serves"
    assert client.predict("efficientnet-lite0", inputs={"image": cat_jpeg}).outputs["classes"]


# TorchServe's text model under a second name, its stream off: PredictStream is answered by
# TorchServe's unary Predictions, wrapped as one message.
UNARY_TEXT_MODEL = "smollm2-torch-unary"
UNARY_TEXT_ROUTE = f"""[models.{UNARY_TEXT_MODEL}]
backend = "torchserve"
backend_model = "smollm2-135m-torch"
task = "text_generation"
max_tokens = 512
"""


def test_stream_of_a_text_model_without_streaming_is_one_complete_message(mesh, tmp_path) -> None:
    config = mesh_config(ts=mesh.torchserve, ts_models=False, extra_models=UNARY_TEXT_ROUTE)
    front = gateway(tmp_path, config, "unary-text-gw")
    front.start(timeout=120)
    try:
        with Client(front.address, max_attempts=1) as c:
            args = dict(max_tokens=8, temperature=0)
            chunks = list(c.predict_stream(UNARY_TEXT_MODEL, "The capital of France is", **args))
            unary = c.predict(UNARY_TEXT_MODEL, "The capital of France is", **args)
    finally:
        front.stop()
    assert len(chunks) == 1, chunks
    (only,) = chunks
    assert only.text and only.text == unary.text
    assert only.finish_reason == unary.finish_reason
    assert only.finish_reason in {"length", "eos_token"}
    assert only.usage is not None and only.usage == unary.usage
    assert only.token_count == unary.usage.completion_tokens > 0


def test_unknown_torchserve_model_is_not_found(mesh, tmp_path) -> None:
    ghost = '[models.ghost]\nbackend = "torchserve"\ntask = "embedding"\n'
    front = gateway(tmp_path, mesh_config(ts=mesh.torchserve, extra_models=ghost), "ghost-gw")
    front.start(timeout=120)
    try:
        with Client(front.address) as c:
            with pytest.raises(NotFound, match="not registered in TorchServe") as caught:
                c.predict("ghost", inputs={"text": "hi"})
            assert caught.value.reason == "MODEL_NOT_FOUND"
            with pytest.raises(NotFound, match=r"it has: .*efficientnet-lite0"):
                c.get_model("ghost")
            assert c.predict("all-minilm-l6-v2", inputs={"text": "still serving"}).outputs
    finally:
        front.stop()


def test_a_call_without_the_torchserve_token_fails_at_torchserve(mesh, tmp_path) -> None:
    stub = ts_inference(mesh)
    request = inference_pb2.PredictionsRequest(
        model_name="all-minilm-l6-v2", input={"text": b"hello"}
    )
    for metadata in ([], [("authorization", "Bearer wrong-key")]):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predictions(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "Token Authorization failed" in caught.value.details()
    key = mesh.torchserve.keys()["inference"]
    assert stub.Predictions(request, metadata=[("authorization", f"Bearer {key}")]).prediction
    assert (
        "Healthy"
        in stub.Ping(empty_pb2.Empty(), metadata=[("authorization", f"Bearer {key}")]).health
    )

    # A gateway without the key: TorchServe refuses its health polls, so the backend is out,
    # and a client learns why.
    front = gateway(tmp_path, mesh_config(ts=mesh.torchserve, key_file=""), "keyless-gw")
    front.start(wait=False)
    try:
        wait_for(lambda: health_status(front.address) == "NOT_SERVING", 30, "gateway up")
        with Client(front.address) as c, pytest.raises(Unavailable) as caught:
            c.predict("all-minilm-l6-v2", inputs={"text": "hello"})
        assert caught.value.reason == "NO_SERVING_REPLICA"
        assert "refused: PERMISSION_DENIED: Token Authorization failed" in caught.value.message
    finally:
        front.stop()


def test_the_management_api_registers_no_archive_from_outside_the_model_store(mesh) -> None:
    """The model API is on (the labs change batching through it), for the model store only."""
    with grpc.insecure_channel(mesh.torchserve.management) as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        key = mesh.torchserve.keys()["management"]
        for url in ("https://example.com/model.mar", "file:///etc/passwd", "../x/model.mar"):
            request = management_pb2.RegisterModelRequest(url=url, model_name="outsider")
            with pytest.raises(grpc.RpcError) as caught:
                stub.RegisterModel(request, metadata=[("authorization", f"Bearer {key}")])
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND, url
            assert (
                "allowed URL" in caught.value.details() or "Relative path" in caught.value.details()
            )


def test_models_lists_torchserve_and_llama_models_with_capabilities(mesh) -> None:
    result = subprocess.run(
        [str(BIN / "servemesh"), "--target", mesh.gateway.address, "models", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    models = {m["name"]: m for m in json.loads(result.stdout)}
    assert set(models) == {*TORCHSERVE_MODELS, "smollm2-135m-instruct"}
    assert all(m["ready"] for m in models.values())
    assert models["efficientnet-lite0"]["backend_kind"] == "torchserve"
    assert models["efficientnet-lite0"]["input_kinds"] == ["named_values"]
    assert models["efficientnet-lite0"]["streaming"] is False
    assert models["smollm2-135m-torch"]["streaming"] is True
    assert models["smollm2-135m-torch"]["input_kinds"] == ["prompt", "chat"]


def java_properties(text: str) -> dict[str, str]:
    """A .properties file's keys and values, continuation lines joined."""
    props, logical = {}, ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1].strip()
            continue
        key, _, value = (logical + line.strip()).partition("=")
        props[key.strip()], logical = value.strip(), ""
    return props


def test_torchserve_config_and_archives_name_the_same_models() -> None:
    properties = java_properties((ROOT / "predictors/torchserve/config.properties").read_text())
    configured = json.loads(properties["models"])
    assert all(v["1.0"]["batchSize"] >= 1 for v in configured.values())
    with open(ROOT / "predictors/torchserve/models.toml", "rb") as f:
        archives = tomllib.load(f)["models"]
    with open(ROOT / "deploy/mesh.toml", "rb") as f:
        routed = {n for n, m in tomllib.load(f)["models"].items() if m["backend"] == "torchserve"}
    assert set(configured) == set(archives) == routed == set(TORCHSERVE_MODELS)
    assert properties["disable_token_authorization"] == "false"


@pytest.mark.parametrize(
    ("model", "inputs", "key"),
    [("efficientnet-lite0", "image", "classification"), ("all-minilm-l6-v2", "text", "vector")],
)
def test_grpcurl_image_and_embedding(
    mesh, cat_jpeg: bytes, model: str, inputs: str, key: str
) -> None:
    import base64

    value = (
        {"data": base64.b64encode(cat_jpeg).decode()} if inputs == "image" else {"text": "hello"}
    )
    request = {"model": model, "inference": {"inputs": {inputs: value}}}
    result = subprocess.run(
        [
            str(BIN / "grpcurl"),
            "-plaintext",
            "-d",
            json.dumps(request),
            mesh.gateway.address,
            "servemesh.v1.PredictionService/Predict",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["inference"]["outputs"]
    assert key in (outputs.get("classes") or outputs.get("embedding"))
