"""Checks the gateway's Open Inference Protocol service with tritonclient.grpc, unchanged.

tritonclient pins protobuf < 7, so this runs in .venv-clients (`make clients-venv`), not in
.venv, and imports nothing from servemesh. tests/test_kserve.py runs it and asserts on its
report: one JSON object per check on stdout, {"name", "ok", "error", "details"}.

    .venv-clients/bin/python tests/kserve_client/check_tritonclient.py --url HOST:PORT \\
        --cat cat.jpg --coffee coffee.jpg [--api-key KEY] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

CLASSIFIER = "efficientnet-lite0"
EMBEDDER = "all-minilm-l6-v2"
TEXT_MODELS = ("smollm2-135m-instruct", "smollm2-135m-torch")
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@dataclass
class Context:
    client: triton.InferenceServerClient
    headers: dict[str, str] | None
    cat: bytes
    coffee: bytes


Check = Callable[[Context], dict[str, Any]]
CHECKS: dict[str, Check] = {}


def check(function: Check) -> Check:
    CHECKS[function.__name__.removeprefix("check_")] = function
    return function


def images(*encoded: bytes, shape: list[int] | None = None) -> triton.InferInput:
    tensor = triton.InferInput("image", shape or [len(encoded)], "BYTES")
    return tensor.set_data_from_numpy(np.array(encoded, dtype=np.object_).reshape(tensor.shape()))


def texts(name: str, *values: str) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(values)], "BYTES")
    return tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))


def refused(call: Callable[[], Any]) -> InferenceServerException:
    """The exception `call` raises; fails the check when it raises none."""
    try:
        call()
    except InferenceServerException as error:
        return error
    raise AssertionError("the call succeeded; it should have been refused")


def expect(error: InferenceServerException, status: str, *phrases: str) -> dict[str, str]:
    assert error.status() == f"StatusCode.{status}", (error.status(), error.message())
    for phrase in phrases:
        assert phrase in (error.message() or ""), (phrase, error.message())
    return {"status": error.status(), "message": error.message() or ""}


@check
def check_server_live(ctx: Context) -> dict[str, Any]:
    assert ctx.client.is_server_live(headers=ctx.headers) is True
    return {}


@check
def check_server_ready(ctx: Context) -> dict[str, Any]:
    assert ctx.client.is_server_ready(headers=ctx.headers) is True
    return {}


@check
def check_model_ready(ctx: Context) -> dict[str, Any]:
    for model in (CLASSIFIER, EMBEDDER):
        assert ctx.client.is_model_ready(model, headers=ctx.headers) is True, model
    error = refused(lambda: ctx.client.is_model_ready("no-such-model", headers=ctx.headers))
    return expect(error, "NOT_FOUND", "no-such-model", CLASSIFIER)


@check
def check_server_metadata(ctx: Context) -> dict[str, Any]:
    metadata = ctx.client.get_server_metadata(headers=ctx.headers)
    assert metadata.name == "servemesh" and metadata.version, metadata
    as_json = ctx.client.get_server_metadata(headers=ctx.headers, as_json=True)
    assert as_json["name"] == "servemesh", as_json
    return {"name": metadata.name, "version": metadata.version}


def tensors(metadata: Any) -> list[tuple[str, str, list[int]]]:
    return [(t.name, t.datatype, list(t.shape)) for t in metadata]


@check
def check_model_metadata(ctx: Context) -> dict[str, Any]:
    classifier = ctx.client.get_model_metadata(CLASSIFIER, headers=ctx.headers)
    assert classifier.name == CLASSIFIER and classifier.platform == "torchserve", classifier
    assert tensors(classifier.inputs) == [("image", "BYTES", [-1])], classifier.inputs
    assert tensors(classifier.outputs) == [
        ("scores", "FP32", [-1, -1]),
        ("indices", "INT64", [-1, -1]),
        ("labels", "BYTES", [-1, -1]),
    ], classifier.outputs
    embedder = ctx.client.get_model_metadata(EMBEDDER, headers=ctx.headers, as_json=True)
    assert embedder["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}], embedder
    assert [o["name"] for o in embedder["outputs"]] == ["embedding"], embedder
    generators = {}
    for model in TEXT_MODELS:
        metadata = ctx.client.get_model_metadata(model, headers=ctx.headers)
        assert tensors(metadata.inputs) == [("text_input", "BYTES", [-1])], (model, metadata)
        assert [o.name for o in metadata.outputs] == ["text_output", "finish_reason"], metadata
        generators[model] = metadata.platform
    assert generators == {"smollm2-135m-instruct": "llama_cpp", "smollm2-135m-torch": "torchserve"}
    error = refused(lambda: ctx.client.get_model_metadata("nope", headers=ctx.headers))
    return expect(error, "NOT_FOUND", "'nope'", CLASSIFIER)


def classify(ctx: Context, *encoded: bytes, **options: Any) -> triton.InferResult:
    return ctx.client.infer(CLASSIFIER, [images(*encoded, **options)], headers=ctx.headers)


@check
def check_classifier_one_image(ctx: Context) -> dict[str, Any]:
    result = ctx.client.infer(
        CLASSIFIER,
        [images(ctx.cat)],
        headers=ctx.headers,
        request_id="cat-1",
        parameters={"top_k": 3},
    )
    scores, indices = result.as_numpy("scores"), result.as_numpy("indices")
    labels = result.as_numpy("labels")
    assert scores.shape == indices.shape == labels.shape == (1, 3), (scores.shape, labels.shape)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    assert int(indices[0, 0]) in CAT_CLASSES, indices
    assert b"cat" in labels[0, 0], labels
    assert scores[0, 0] > 0.3 and list(scores[0]) == sorted(scores[0], reverse=True), scores
    assert result.get_response().id == "cat-1"
    assert result.get_response().model_name == CLASSIFIER
    return {"top": labels[0, 0].decode(), "score": float(scores[0, 0])}


@check
def check_classifier_batch_in_order(ctx: Context) -> dict[str, Any]:
    alone = [classify(ctx, image).as_numpy("indices")[0] for image in (ctx.cat, ctx.coffee)]
    result = classify(ctx, ctx.cat, ctx.coffee, ctx.cat, ctx.coffee, shape=[4, 1])
    indices = result.as_numpy("indices")
    assert indices.shape == (4, 5), indices.shape  # the handler's default top 5
    assert int(indices[0, 0]) in CAT_CLASSES and int(indices[1, 0]) not in CAT_CLASSES, indices
    for row, expected in zip(indices, [*alone, *alone], strict=True):
        assert list(row) == list(expected), (indices, alone)
    return {"indices": indices[:, 0].tolist()}


@check
def check_classifier_requested_outputs(ctx: Context) -> dict[str, Any]:
    result = ctx.client.infer(
        CLASSIFIER,
        [images(ctx.cat, ctx.cat)],
        outputs=[triton.InferRequestedOutput("labels")],
        headers=ctx.headers,
        parameters={"top_k": 1},
    )
    names = [o.name for o in result.get_response().outputs]
    assert names == ["labels"], names
    assert result.as_numpy("labels").shape == (2, 1) and result.as_numpy("scores") is None
    return {"outputs": names}


@check
def check_embedder_batch(ctx: Context) -> dict[str, Any]:
    sentences = (
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Quarterly revenue grew by eight percent.",
    )
    result = ctx.client.infer(EMBEDDER, [texts("text", *sentences)], headers=ctx.headers)
    vectors = result.as_numpy("embedding")
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32, vectors.shape
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3), norms
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > 0.6 > unrelated, (similar, unrelated)
    return {"similar": similar, "unrelated": unrelated}


@check
def check_text_generation(ctx: Context) -> dict[str, Any]:
    result = ctx.client.infer(
        TEXT_MODELS[0],
        [texts("text_input", "The capital of France is")],
        headers=ctx.headers,
        parameters={"max_tokens": 8, "temperature": 0.0},
    )
    text, reason = result.as_numpy("text_output")[0], result.as_numpy("finish_reason")[0]
    assert text.strip() and reason in (b"length", b"eos_token"), (text, reason)
    return {"text": text.decode(), "finish_reason": reason.decode()}


@check
def check_errors(ctx: Context) -> dict[str, Any]:
    details = {}
    error = refused(
        lambda: ctx.client.infer("no-such-model", [images(ctx.cat)], headers=ctx.headers)
    )
    details["unknown model"] = expect(error, "NOT_FOUND", "'no-such-model'", CLASSIFIER)
    wrong_name = texts("img", "x")
    error = refused(lambda: ctx.client.infer(CLASSIFIER, [wrong_name], headers=ctx.headers))
    details["wrong input"] = expect(error, "INVALID_ARGUMENT", "'img'", "'image'")
    floats = triton.InferInput("image", [1, 3], "FP32")
    floats.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    error = refused(lambda: ctx.client.infer(CLASSIFIER, [floats], headers=ctx.headers))
    details["datatype"] = expect(error, "INVALID_ARGUMENT", "FP32", "BYTES")
    error = refused(lambda: classify(ctx, b"not an image"))
    details["not an image"] = expect(error, "INVALID_ARGUMENT", "not an image")
    error = refused(lambda: classify(ctx, *[ctx.cat] * 33))
    details["batch"] = expect(error, "INVALID_ARGUMENT", "kserve.max_batch_size")
    error = refused(
        lambda: ctx.client.infer(
            CLASSIFIER, [images(ctx.cat)], headers=ctx.headers, parameters={"topk": 2}
        )
    )
    details["parameter"] = expect(error, "INVALID_ARGUMENT", "'topk'", "top_k")
    error = refused(
        lambda: ctx.client.infer(
            CLASSIFIER,
            [images(ctx.cat)],
            outputs=[triton.InferRequestedOutput("scores", class_count=2)],
            headers=ctx.headers,
        )
    )
    details["classification"] = expect(error, "INVALID_ARGUMENT", "classification extension")
    # The server serves on after every refusal.
    assert int(classify(ctx, ctx.cat).as_numpy("indices")[0, 0]) in CAT_CLASSES
    return details


@check
def check_deadline(ctx: Context) -> dict[str, Any]:
    error = refused(
        lambda: ctx.client.infer(
            CLASSIFIER, [images(*[ctx.cat] * 8)], headers=ctx.headers, client_timeout=0.001
        )
    )
    return expect(error, "DEADLINE_EXCEEDED")


@check
def check_without_key_is_unauthenticated(ctx: Context) -> dict[str, Any]:
    """Only meaningful against a gateway with API keys (run with --api-key)."""
    assert ctx.headers, "run with --api-key"
    error = refused(lambda: ctx.client.is_server_ready())
    details = expect(error, "UNAUTHENTICATED", "API key")
    error = refused(lambda: ctx.client.infer(CLASSIFIER, [images(ctx.cat)]))
    expect(error, "UNAUTHENTICATED")
    wrong = {"authorization": "Bearer wrong-key"}
    expect(refused(lambda: ctx.client.is_model_ready(CLASSIFIER, headers=wrong)), "UNAUTHENTICATED")
    return details


def run(name: str, ctx: Context) -> dict[str, Any]:
    try:
        return {"name": name, "ok": True, "error": "", "details": CHECKS[name](ctx)}
    except Exception as error:
        text = "".join(traceback.format_exception(error, limit=-3))
        return {"name": name, "ok": False, "error": text, "details": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway's HOST:PORT")
    parser.add_argument("--cat", type=Path, required=True, help="a JPEG of a cat")
    parser.add_argument("--coffee", type=Path, required=True, help="a JPEG of something else")
    parser.add_argument("--api-key", help="send 'authorization: Bearer KEY' on every call")
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), help="checks to run")
    args = parser.parse_args()
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else None
    names = args.only or [n for n in CHECKS if n != "without_key_is_unauthenticated"]
    with triton.InferenceServerClient(args.url) as client:
        ctx = Context(client, headers, args.cat.read_bytes(), args.coffee.read_bytes())
        for name in names:
            print(json.dumps(run(name, ctx)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
