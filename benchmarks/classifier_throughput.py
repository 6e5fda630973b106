"""The image classifier through the gateway against TorchServe's gRPC API called directly.

Same photo, same TorchServe, at each concurrency level: requests/s and latency percentiles,
and the gateway's ratio to direct TorchServe. Needs the mesh from `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path
from typing import Any

import grpc
from PIL import Image
from skimage import data

from servemesh import AsyncClient
from servemesh.bench.runner import alternating
from servemesh.bench.unary import Call, measure, median_run
from torchserve_grpc import inference_pb2, inference_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
MODEL = "efficientnet-lite0"


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateway", default="localhost:50051")
    p.add_argument("--torchserve", default="localhost:7070")
    p.add_argument("--key-file", type=Path, default=ROOT / "run" / "torchserve" / "key_file.json")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians reported")
    p.add_argument("--out", type=Path, default=ROOT / "run" / "bench" / "classifier.json")
    a = p.parse_args()
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG")
    image = buffer.getvalue()
    key = json.loads(a.key_file.read_text())["inference"]["key"]
    channel = grpc.aio.insecure_channel(a.torchserve)
    stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
    request = inference_pb2.PredictionsRequest(model_name=MODEL, input={"image": image})

    async with AsyncClient(a.gateway) as client:
        systems: dict[str, Call] = {
            "TorchServe gRPC, direct": lambda: stub.Predictions(
                request, metadata=[("authorization", f"Bearer {key}")], timeout=60
            ),
            "servemesh gateway": lambda: client.predict(MODEL, inputs={"image": image}),
        }
        for name, call in systems.items():
            await measure(call, 8, 4, f"{name}, warm-up")
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for concurrency in a.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
            for round_, name in alternating(list(systems), a.rounds):
                label = f"{name}, concurrency {concurrency}, round {round_ + 1}/{a.rounds}:"
                runs[name].append(await measure(systems[name], a.requests, concurrency, label))
            results[str(concurrency)] = {name: median_run(r) for name, r in runs.items()}
    await channel.close()

    print(f"\n{MODEL}, one JPEG photo, {a.requests} requests a run, median of {a.rounds} runs")
    header = f"{'concurrency':>11} {'system':26} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8}"
    print(f"{header} {'vs direct':>10}  rounds req/s")
    for concurrency, by_system in results.items():
        direct = by_system["TorchServe gRPC, direct"]["requests_per_s"]
        for name, r in by_system.items():
            latency = r["latency_ms"]
            print(
                f"{concurrency:>11} {name:26} {r['requests_per_s']:8.1f} {latency['p50']:8.1f} "
                f"{latency['p90']:8.1f} {r['requests_per_s'] / direct:10.2f}  "
                + " / ".join(f"{x:.1f}" for x in r["rounds_requests_per_s"])
            )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"requests": a.requests, "results": results}, indent=2))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    asyncio.run(main())
