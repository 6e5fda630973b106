"""What a relay in front of a backend costs per unary call: the mesh's tax.

The backend (benchmarks/relays/echo_backend.py) speaks servemesh.v1 and answers at once, so
each target's time is the relay's own plus the client's. The same Predict (a 100-byte text
input) goes to it:

- direct: no relay;
- nginx `grpc_pass` (Debian's nginx-light; skipped, with a note, where nginx is absent);
- a raw-bytes grpc.aio relay (benchmarks/relays/raw_relay.py): the floor of Python gRPC;
- the servemesh gateway, with everything it does (routing, limits, admission, metrics, ids),
  as one process and as two worker processes on one port (--workers 2).

The client spreads its calls over CHANNELS connections to each target, as many clients would:
a gateway's workers share connections, not calls, between them.

Alternating rounds at concurrency 1 and 16, the round with the median throughput reported,
ratios against the relay from the same run. Starts and stops every server itself on free
ports; needs no `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

from deploy.health_probe import health_status
from deploy.local.ports import free_ports
from servemesh.bench.runner import alternating
from servemesh.bench.unary import Call, measure, median_run
from servemesh.v1 import inference_pb2 as inf
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
MODEL = "echo"
TEXT = "x" * 100
DIRECT, NGINX, RELAY, GATEWAY = "direct", "nginx grpc_pass", "raw grpc.aio relay", "gateway"
GATEWAY_2 = "gateway, 2 workers"
CHANNELS = 4
NGINX_CONF = """\
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend {{ server {backend}; keepalive 64; }}
    server {{
        listen {address} http2;
        location / {{ grpc_pass grpc://backend; }}
    }}
}}
"""


@contextmanager
def process(command: list[str], log: Path, ready: str | None) -> Iterator[None]:
    """A server for the length of the block; `ready`: a gRPC address whose health must say
    SERVING first (else a short wait for the port)."""
    with open(log, "wb") as out:
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while ready and health_status(ready) != "SERVING":
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command[0]} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def start_targets(stack: ExitStack, work: Path) -> tuple[dict[str, str], list[str]]:
    """Every target's address, and notes on those left out."""
    backend, relay, front, front_2, nginx, metrics, metrics_2 = (
        f"127.0.0.1:{p}" for p in free_ports(7)
    )
    python = sys.executable
    stack.enter_context(
        process(
            [python, "benchmarks/relays/echo_backend.py", "--address", backend],
            work / "echo.log",
            backend,
        )
    )
    targets, notes = {DIRECT: backend}, []
    nginx_bin = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx_bin:
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=work, backend=backend, address=nginx))
        stack.enter_context(
            process([nginx_bin, "-c", str(conf), "-g", "daemon off;"], work / "nginx.log", nginx)
        )
        targets[NGINX] = nginx
    else:
        notes.append("nginx is not installed (Debian: apt-get install nginx-light): no nginx row")
    stack.enter_context(
        process(
            [python, "benchmarks/relays/raw_relay.py", "--address", relay, "--backend", backend],
            work / "relay.log",
            None,
        )
    )
    targets[RELAY] = relay
    config = work / "mesh.toml"
    config.write_text(
        f'[backends.echo]\nkind = "servemesh"\ntarget = "{backend}"\n'
        f'[models.{MODEL}]\nbackend = "echo"\n'
    )
    for name, address, port, extra in (
        (GATEWAY, front, metrics, []),
        (GATEWAY_2, front_2, metrics_2, ["--workers", "2"]),
    ):
        gateway = [python, "-m", "gateway", "--address", address, "--config", str(config)]
        gateway += ["--http-address", "off", "--metrics-port", port.rpartition(":")[2], *extra]
        stack.enter_context(process(gateway, work / f"{name}.log", address))
        targets[name] = address
    return targets, notes


async def compare(
    targets: dict[str, str], concurrency: int, requests: int, rounds: int, warm_up: int
) -> dict[str, Any]:
    request = pb.PredictRequest(
        model=MODEL, inference=inf.InferenceInput(inputs={"text": inf.InferenceValue(text=TEXT)})
    )
    # A local subchannel pool per channel: otherwise channels to one address share one
    # connection.
    own = [("grpc.use_local_subchannel_pool", 1)]
    channels = {
        name: [grpc.aio.insecure_channel(address, options=own) for _ in range(CHANNELS)]
        for name, address in targets.items()
    }

    def predict(chans: list[grpc.aio.Channel]) -> Call:
        stubs = itertools.cycle([pb_grpc.PredictionServiceStub(ch) for ch in chans])
        return lambda: next(stubs).Predict(request, timeout=10)

    calls = {name: predict(chans) for name, chans in channels.items()}
    try:
        for name, call in calls.items():  # connections up, caches warm
            await measure(call, warm_up, concurrency, f"conc {concurrency}, {name}, warm-up")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
        for round_, name in alternating(list(calls), rounds):
            label = f"conc {concurrency}, {name}, round {round_ + 1}/{rounds}:"
            runs[name].append(await measure(calls[name], requests, concurrency, label))
    finally:
        await asyncio.gather(*(ch.close() for chans in channels.values() for ch in chans))
    return {name: median_run(r) for name, r in runs.items()}


def report(results: dict[int, dict[str, Any]], notes: list[str]) -> dict[str, float]:
    one, many = results[1], results[16]
    base = one[DIRECT]["latency_ms"]["p50"]
    print(f"\n{'target':22} {'c1 req/s':>9} {'c1 p50 µs':>10} {'added µs':>9} {'c16 req/s':>10}")
    for name in one:
        p50 = one[name]["latency_ms"]["p50"]
        print(
            f"{name:22} {one[name]['requests_per_s']:9.0f} {p50 * 1000:10.0f} "
            f"{(p50 - base) * 1000:+9.0f} {many[name]['requests_per_s']:10.0f}"
        )

    def added(name: str) -> float:
        return one[name]["latency_ms"]["p50"] - base

    ratios = {
        "gateway_added_p50_over_relay": added(GATEWAY) / added(RELAY),
        "gateway_c16_throughput_over_relay": many[GATEWAY]["requests_per_s"]
        / many[RELAY]["requests_per_s"],
    }
    ratios["two_workers_c16_throughput_over_one"] = (
        many[GATEWAY_2]["requests_per_s"] / many[GATEWAY]["requests_per_s"]
    )
    if NGINX in many:
        ratios["gateway_c16_throughput_over_nginx"] = (
            many[GATEWAY]["requests_per_s"] / many[NGINX]["requests_per_s"]
        )
    print(
        f"\ngateway added p50 / relay added p50: "
        f"{ratios['gateway_added_p50_over_relay']:.2f}x (target at most 1.10x)"
    )
    print(
        f"gateway / relay req/s at concurrency 16: "
        f"{ratios['gateway_c16_throughput_over_relay']:.2f}x (target at least 0.95x)"
    )
    print(
        f"gateway, 2 workers / 1 worker req/s at concurrency 16: "
        f"{ratios['two_workers_c16_throughput_over_one']:.2f}x"
    )
    if "gateway_c16_throughput_over_nginx" in ratios:
        print(
            f"gateway / nginx req/s at concurrency 16: "
            f"{ratios['gateway_c16_throughput_over_nginx']:.2f}x"
        )
    for note in notes:
        print(f"note: {note}")
    return ratios


async def run(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        targets, notes = start_targets(stack, Path(tmp))
        results = {c: await compare(targets, c, a.requests, a.rounds, a.warm_up) for c in (1, 16)}
    ratios = report(results, notes)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "requests": a.requests,
                "rounds": a.rounds,
                "results": results,
                "ratios": ratios,
                "notes": notes,
            },
            indent=2,
        )
    )
    print(f"wrote {a.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=4000, help="calls a round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians reported")
    p.add_argument("--warm-up", type=int, default=500, help="calls per target before rounds")
    p.add_argument("--out", type=Path, default=ROOT / "run" / "bench" / "proxy_overhead.json")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
