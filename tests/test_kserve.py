"""The Open Inference Protocol (KServe V2) at the gateway, against the real mesh: tritonclient
unchanged (in .venv-clients, through tests/kserve_client/check_tritonclient.py), the
generated stubs for what tritonclient never sends (typed contents, malformed tensors), limits,
deadlines and cancellation, reflection, metrics, and API keys."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data

from gateway.kserve.batch import MAX_BATCH_SIZE
from gateway.kserve.tensors import join_bytes, split_bytes
from kserve_v2 import grpc_predict_v2_pb2 as pb
from kserve_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from servemesh.errors import from_rpc_error
from tests.servers import BIN, MODEL, ROOT, gateway, health_status, mesh_config

CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SCRIPT = ROOT / "tests" / "kserve_client" / "check_tritonclient.py"
# The checks the script runs by default; a check added there is added here too, so none goes
# unrun (test_every_tritonclient_check_ran).
CHECKS = [
    "server_live",
    "server_ready",
    "model_ready",
    "server_metadata",
    "model_metadata",
    "classifier_one_image",
    "classifier_batch_in_order",
    "classifier_requested_outputs",
    "embedder_batch",
    "text_generation",
    "errors",
    "deadline",
]
CLASSIFIER, EMBEDDER = "efficientnet-lite0", "all-minilm-l6-v2"
CAT_CLASSES = range(281, 286)
COUNTING = "1, 2, 3, 4, 5, 6, 7,"  # greedy decoding keeps counting for hundreds of tokens
CANCELLED = "servemesh_llama_generations_finished_total{outcome=cancelled}"
SERVICE = "inference.GRPCInferenceService"
API_KEY = "kserve-test-key"
Input = pb.ModelInferRequest.InferInputTensor


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cat_jpeg() -> bytes:
    return jpeg(data.chelsea())  # a public-domain photo of a cat


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory, cat_jpeg: bytes) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kserve-images")
    files = {"cat": folder / "cat.jpg", "coffee": folder / "coffee.jpg"}
    files["cat"].write_bytes(cat_jpeg)
    files["coffee"].write_bytes(jpeg(data.coffee()))
    return files


def run_checks(
    address: str, images: dict[str, Path], *extra: str, timeout: float = 240
) -> dict[str, dict]:
    """The script's report, by check name."""
    if not CLIENTS_PYTHON.exists():
        pytest.skip("tritonclient's environment is missing: run `make clients-venv`")
    command = [str(CLIENTS_PYTHON), str(SCRIPT), "--url", address]
    command += ["--cat", str(images["cat"]), "--coffee", str(images["coffee"]), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"the script failed:\n{done.stdout}\n{done.stderr}"
    report = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {r["name"]: r for r in report}


@pytest.fixture(scope="module")
def triton_report(mesh, image_files: dict[str, Path]) -> dict[str, dict]:
    return run_checks(mesh.gateway.address, image_files)


def test_every_tritonclient_check_ran(triton_report: dict[str, dict]) -> None:
    assert list(triton_report) == CHECKS


@pytest.mark.parametrize("name", CHECKS)
def test_tritonclient(triton_report: dict[str, dict], name: str) -> None:
    result = triton_report[name]
    assert result["ok"], f"tritonclient check {name!r} failed:\n{result['error']}"


# --- the generated stubs: what tritonclient does not send ---


@pytest.fixture(scope="module")
def stub(mesh) -> pb_grpc.GRPCInferenceServiceStub:
    channel = grpc.insecure_channel(mesh.gateway.address)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def typed(name: str, elements: list[bytes], shape: list[int] | None = None) -> Input:
    return Input(
        name=name,
        datatype="BYTES",
        shape=shape or [len(elements)],
        contents=pb.InferTensorContents(bytes_contents=elements),
    )


def raw(model: str, name: str, payload: bytes, shape: list[int]) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Input(name=name, datatype="BYTES", shape=shape)],
        raw_input_contents=[payload],
    )


def outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The response's tensors, read from raw_output_contents as tritonclient reads them."""
    assert len(response.raw_output_contents) == len(response.outputs)
    tensors = {}
    for tensor, content in zip(response.outputs, response.raw_output_contents, strict=True):
        assert not tensor.HasField("contents"), "raw contents only"
        count = int(np.prod(tensor.shape))
        if tensor.datatype == "BYTES":
            values = np.array(split_bytes(content, count, tensor.name), dtype=object)
        else:
            values = np.frombuffer(content, {"FP32": "<f4", "INT64": "<i8"}[tensor.datatype])
        tensors[tensor.name] = values.reshape(tuple(tensor.shape))
    return tensors


def refusal(stub: pb_grpc.GRPCInferenceServiceStub, request: pb.ModelInferRequest):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=60)
    return from_rpc_error(caught.value)


def test_typed_bytes_contents_work_like_raw_contents(stub, cat_jpeg: bytes) -> None:
    texts = [b"A cat naps on the couch.", b"Rivers flow to the sea."]
    by_contents = stub.ModelInfer(
        pb.ModelInferRequest(model_name=EMBEDDER, inputs=[typed("text", texts)]), timeout=60
    )
    by_raw = stub.ModelInfer(raw(EMBEDDER, "text", join_bytes(texts), [2, 1]), timeout=60)
    a, b = outputs(by_contents)["embedding"], outputs(by_raw)["embedding"]
    assert a.shape == b.shape == (2, 384)
    assert np.allclose(a, b, atol=1e-5)
    classified = stub.ModelInfer(
        pb.ModelInferRequest(model_name=CLASSIFIER, inputs=[typed("image", [cat_jpeg])], id="x"),
        timeout=60,
    )
    assert classified.id == "x" and classified.model_name == CLASSIFIER
    assert int(outputs(classified)["indices"][0, 0]) in CAT_CLASSES


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (raw(EMBEDDER, "text", b"\x05\x00\x00", [1]), "length prefix of element 0"),
        (raw(EMBEDDER, "text", b"\x09\x00\x00\x00abc", [1]), "says it has 9 bytes"),
        (raw(EMBEDDER, "text", join_bytes([b"a", b"b"]), [1]), "more than the 1 BYTES"),
        (raw(EMBEDDER, "text", join_bytes([b"a"]), [2]), "hold 1 BYTES elements"),
        (raw(EMBEDDER, "text", b"", [0]), "no elements"),
        (raw(EMBEDDER, "text", b"", [-1]), "must be 0 or more"),
        (raw(EMBEDDER, "text", join_bytes([b"a", b"b"]), [1, 2]), "give [n] or [n, 1]"),
        (raw(EMBEDDER, "text", join_bytes([b"\xff"]), [1]), "not UTF-8"),
        (
            pb.ModelInferRequest(model_name=EMBEDDER, inputs=[typed("text", [b"a"], [2])]),
            "1 elements in contents.bytes_contents",
        ),
        (
            pb.ModelInferRequest(
                model_name=EMBEDDER, inputs=[typed("text", [b"a"])], raw_input_contents=[b""]
            ),
            "use one representation",
        ),
        (
            pb.ModelInferRequest(
                model_name=EMBEDDER,
                inputs=[Input(name="text", datatype="FP16", shape=[1])],
                raw_input_contents=[b"\x00\x00"],
            ),
            "is FP16; this model takes it as BYTES",
        ),
        (
            pb.ModelInferRequest(
                model_name=EMBEDDER,
                inputs=[Input(name="text", datatype="STRING", shape=[1])],
                raw_input_contents=[b""],
            ),
            "does not define",
        ),
    ],
    ids=[
        "short-prefix",
        "overrun",
        "extra-element",
        "missing-element",
        "empty-batch",
        "negative-dim",
        "matrix",
        "not-utf8",
        "typed-count",
        "raw-and-typed",
        "wrong-datatype",
        "unknown-datatype",
    ],
)
def test_malformed_tensors_are_invalid_argument_and_the_server_serves_on(
    stub, request_: pb.ModelInferRequest, message: str
) -> None:
    error = refusal(stub, request_)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and message in error.message, error
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


def test_a_batch_over_the_limit_is_refused_naming_the_limit(stub) -> None:
    texts = [b"x"] * (MAX_BATCH_SIZE + 1)
    error = refusal(stub, raw(EMBEDDER, "text", join_bytes(texts), [len(texts)]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_BATCH_SIZE} per request (kserve.max_batch_size)" in error.message
    assert error.metadata["limit"] == "kserve.max_batch_size"
    full = stub.ModelInfer(raw(EMBEDDER, "text", join_bytes(texts[:-1]), [MAX_BATCH_SIZE]))
    assert outputs(full)["embedding"].shape == (MAX_BATCH_SIZE, 384)


def test_an_input_over_the_gateways_byte_limit_names_the_limit(stub) -> None:
    big = b"a" * (8 * 1024 * 1024 + 1)  # limits.max_input_bytes, per element
    error = refusal(stub, raw(EMBEDDER, "text", join_bytes([big]), [1]))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "limits.max_input_bytes" in error.message, error


def test_one_bad_element_fails_the_request_naming_it(stub, cat_jpeg: bytes) -> None:
    request = pb.ModelInferRequest(
        model_name=CLASSIFIER, inputs=[typed("image", [cat_jpeg, b"not an image", cat_jpeg])]
    )
    error = refusal(stub, request)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith("element 1 of 3: ") and "not an image" in error.message
    assert error.metadata["element"] == "1"


def test_versions_and_unknown_models(stub) -> None:
    versioned = pb.ModelInferRequest(
        model_name=EMBEDDER, model_version="2", inputs=[typed("text", [b"a"])]
    )
    error = refusal(stub, versioned)
    assert error.code == grpc.StatusCode.NOT_FOUND and "leave the version empty" in error.message
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelReady(pb.ModelReadyRequest(name="ghost"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "the models are:" in caught.value.details() and CLASSIFIER in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(pb.ModelMetadataRequest(name=""), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_text_generation_on_torchserve_and_llama_in_one_batch_each(stub) -> None:
    prompts = [b"The capital of France is", b"Water boils at"]
    for model in (MODEL, "smollm2-135m-torch"):
        request = raw(model, "text_input", join_bytes(prompts), [2])
        request.parameters["max_tokens"].int64_param = 6
        request.parameters["temperature"].double_param = 0.0
        tensors = outputs(stub.ModelInfer(request, timeout=120))
        assert tensors["text_output"].shape == (2,) and all(tensors["text_output"]), tensors
        assert set(tensors["finish_reason"]) <= {b"length", b"eos_token"}, tensors


def test_reflection_and_health_list_the_service(mesh) -> None:
    listed = subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", mesh.gateway.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert SERVICE in listed.stdout.split(), listed.stderr
    assert health_status(mesh.gateway.address, SERVICE) == "SERVING"


def test_grpcurl_example_of_the_docs(mesh) -> None:
    text = base64.b64encode(b"A cat sleeps on the sofa.").decode()
    body = {
        "model_name": EMBEDDER,
        "inputs": [
            {
                "name": "text",
                "datatype": "BYTES",
                "shape": [1],
                "contents": {"bytes_contents": [text]},
            }
        ],
    }
    done = subprocess.run(
        [
            str(BIN / "grpcurl"),
            "-plaintext",
            "-d",
            json.dumps(body),
            mesh.gateway.address,
            f"{SERVICE}/ModelInfer",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["outputs"][0] == {"name": "embedding", "datatype": "FP32", "shape": ["1", "384"]}
    vector = np.frombuffer(base64.b64decode(answer["raw_output_contents"][0]), "<f4")
    assert vector.shape == (384,) and abs(float(vector @ vector) - 1) < 1e-3


def test_calls_are_counted_with_the_kserve_protocol(mesh, stub) -> None:
    key = (
        "servemesh_gateway_calls_total{code=OK,method=ModelInfer,model=all-minilm-l6-v2,"
        "protocol=kserve}"
    )
    before = mesh.gateway.metrics.get(key)
    stub.ModelInfer(raw(EMBEDDER, "text", join_bytes([b"a", b"b", b"c"]), [3]), timeout=60)
    assert mesh.gateway.metrics.get(key) == before + 3, "one call per element"


# --- deadlines and cancellation reach the backend ---


def counting(elements: int) -> pb.ModelInferRequest:
    request = raw(MODEL, "text_input", join_bytes([COUNTING.encode()] * elements), [elements])
    request.parameters["max_tokens"].int64_param = 1000
    request.parameters["temperature"].int64_param = 0
    return request


def test_a_deadline_ends_every_element_at_the_backend(mesh, stub) -> None:
    before = mesh.metrics.settled()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(counting(2), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    after = mesh.metrics.settled()
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 2


def test_tritonclients_timeout_parameter_shortens_the_deadline(mesh, stub) -> None:
    before = mesh.metrics.settled()
    request = counting(1)
    request.parameters["timeout"].int64_param = 500_000  # microseconds
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, caught.value
    assert time.monotonic() - started < 3
    after = mesh.metrics.settled()
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 1


async def test_a_client_that_goes_away_cancels_every_element(mesh) -> None:
    before = await asyncio.to_thread(mesh.metrics.settled)
    async with grpc.aio.insecure_channel(mesh.gateway.address) as channel:
        call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(counting(3), timeout=60)
        await asyncio.sleep(0.7)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    after = await asyncio.to_thread(mesh.metrics.settled)
    assert after[CANCELLED] == before.get(CANCELLED, 0) + 3


# --- API keys ---


@pytest.fixture(scope="module")
def keyed_gateway(mesh, tmp_path_factory: pytest.TempPathFactory):
    """A second gateway in front of the same backends, with an API key (plaintext: the key
    check is what is tested, TLS has tests of its own)."""
    folder = tmp_path_factory.mktemp("kserve-keyed")
    key_file = folder / "keys.txt"
    key_file.write_text(f"{API_KEY}\n")
    front = gateway(folder, mesh_config(mesh.predictor.address, mesh.torchserve), "kserve-keyed")
    front.command += ["--api-key-file", str(key_file)]
    try:
        yield front.start(timeout=120)
    finally:
        front.stop()


def test_tritonclient_with_an_api_key(keyed_gateway, image_files: dict[str, Path]) -> None:
    only = ["server_ready", "model_ready", "classifier_one_image", "without_key_is_unauthenticated"]
    report = run_checks(keyed_gateway.address, image_files, "--api-key", API_KEY, "--only", *only)
    assert list(report) == only
    failed = {name: r["error"] for name, r in report.items() if not r["ok"]}
    assert not failed, "\n".join(f"{n}:\n{e}" for n, e in failed.items())
