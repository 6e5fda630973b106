"""What each front door of the gateway adds to the same call: servemesh.v1 gRPC (the native
path), the OpenAI-compatible HTTP API and the Open Inference Protocol (KServe V2) gRPC.

One call at a time (concurrency 1), so a difference in latency is the door's own cost: the
same model, the same input, the same dispatcher behind each door. Each door's client is the
thinnest one for its protocol (the generated stubs for gRPC, raw JSON over one keep-alive
HTTP connection for OpenAI), so client-library overhead is not counted as the door's.
Alternating rounds; the round with the median throughput is reported. Needs `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import grpc
import httpx2

from kserve_v2 import grpc_predict_v2_pb2 as v2
from kserve_v2 import grpc_predict_v2_pb2_grpc as v2_grpc
from servemesh.bench.runner import alternating
from servemesh.bench.unary import Call, measure, median_run
from servemesh.v1 import inference_pb2 as inf
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
EMBEDDER = "all-minilm-l6-v2"
LLM = "smollm2-135m-instruct"
TEXT = "A cat sleeps on the sofa while the rain falls outside."
PROMPT = "The capital of France is"
MAX_TOKENS = 1
NATIVE = "servemesh.v1 gRPC"


def _bytes_tensor(
    name: str, items: list[bytes]
) -> tuple[v2.ModelInferRequest.InferInputTensor, bytes]:
    """A BYTES input as tritonclient sends it: its elements length-prefixed (uint32 LE) in
    raw_input_contents."""
    tensor = v2.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[len(items)])
    return tensor, b"".join(struct.pack("<I", len(i)) + i for i in items)


def embedding_calls(
    stub: pb_grpc.PredictionServiceStub,
    kserve: v2_grpc.GRPCInferenceServiceStub,
    http: httpx2.AsyncClient,
) -> dict[str, Call]:
    native = pb.PredictRequest(
        model=EMBEDDER, inference=inf.InferenceInput(inputs={"text": inf.InferenceValue(text=TEXT)})
    )
    tensor, raw = _bytes_tensor("text", [TEXT.encode()])
    infer = v2.ModelInferRequest(model_name=EMBEDDER, inputs=[tensor], raw_input_contents=[raw])
    body = {"model": EMBEDDER, "input": TEXT}

    async def openai() -> None:
        (await http.post("/v1/embeddings", json=body)).raise_for_status()

    return {
        NATIVE: lambda: stub.Predict(native, timeout=60),
        "OpenAI HTTP /v1/embeddings": openai,
        "KServe V2 ModelInfer": lambda: kserve.ModelInfer(infer, timeout=60),
    }


def generation_calls(
    stub: pb_grpc.PredictionServiceStub,
    kserve: v2_grpc.GRPCInferenceServiceStub,
    http: httpx2.AsyncClient,
) -> dict[str, Call]:
    """One greedy token of a raw prompt: a short prefill, so the doors' cost is not lost in
    the spread of a long generation's time."""
    native = pb.PredictRequest(model=LLM)
    native.text_generation.prompt = PROMPT
    native.text_generation.parameters.max_tokens = MAX_TOKENS
    native.text_generation.parameters.temperature = 0
    body = {"model": LLM, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
    tensor, raw = _bytes_tensor("text_input", [PROMPT.encode()])
    infer = v2.ModelInferRequest(
        model_name=LLM,
        inputs=[tensor],
        raw_input_contents=[raw],
        parameters={
            "max_tokens": v2.InferParameter(int64_param=MAX_TOKENS),
            "temperature": v2.InferParameter(double_param=0.0),
        },
    )

    async def openai() -> None:
        (await http.post("/v1/completions", json=body)).raise_for_status()

    return {
        NATIVE: lambda: stub.Predict(native, timeout=60),
        "OpenAI HTTP /v1/completions": openai,
        "KServe V2 ModelInfer": lambda: kserve.ModelInfer(infer, timeout=60),
    }


async def compare(calls: dict[str, Call], requests: int, rounds: int, what: str) -> dict[str, Any]:
    for name, call in calls.items():
        await measure(call, 8, 1, f"{what}, {name}, warm-up")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
    for round_, name in alternating(list(calls), rounds):
        label = f"{what}, {name}, round {round_ + 1}/{rounds}:"
        runs[name].append(await measure(calls[name], requests, 1, label))
    return {name: median_run(r) for name, r in runs.items()}


def report(what: str, results: dict[str, Any]) -> None:
    native = results[NATIVE]["latency_ms"]["p50"]
    print(f"\n{what}")
    print(f"{'door':36} {'p50 ms':>8} {'p90 ms':>8} {'added p50':>10} {'req/s':>7}  rounds req/s")
    for name, r in results.items():
        latency = r["latency_ms"]
        print(
            f"{name:36} {latency['p50']:8.2f} {latency['p90']:8.2f} "
            f"{latency['p50'] - native:+10.2f} {r['requests_per_s']:7.1f}  "
            + " / ".join(f"{x:.1f}" for x in r["rounds_requests_per_s"])
        )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateway", default="localhost:50051")
    p.add_argument("--http", default="http://localhost:8000")
    p.add_argument("--requests", type=int, default=200, help="calls a round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians reported")
    p.add_argument("--out", type=Path, default=ROOT / "run" / "bench" / "front_doors.json")
    a = p.parse_args()
    results: dict[str, Any] = {}
    async with (
        grpc.aio.insecure_channel(a.gateway) as channel,
        httpx2.AsyncClient(base_url=a.http, timeout=60) as http,
    ):
        stub = pb_grpc.PredictionServiceStub(channel)
        kserve = v2_grpc.GRPCInferenceServiceStub(channel)
        what = f"embedding of one {len(TEXT)}-character text ({EMBEDDER})"
        results[what] = await compare(
            embedding_calls(stub, kserve, http), a.requests, a.rounds, what
        )
        what = f"completion of a {len(PROMPT)}-character prompt, {MAX_TOKENS} token greedy ({LLM})"
        results[what] = await compare(
            generation_calls(stub, kserve, http), a.requests, a.rounds, what
        )
    for what, by_door in results.items():
        report(what, by_door)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"requests": a.requests, "results": results}, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    asyncio.run(main())
