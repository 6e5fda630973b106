"""Two llama predictor replicas behind one gateway: balancing, failover, drain, DNS targets."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from servemesh import AsyncClient
from servemesh.errors import ServemeshError, Unavailable
from tests.servers import (
    MODEL,
    PROMPTS,
    Metrics,
    ServerProcess,
    gateway,
    health_status,
    llama_predictor,
    mesh_config,
    wait_for,
)

FINISHED = "servemesh_llama_generations_finished_total"


@dataclass
class Replicas:
    predictors: list[ServerProcess]
    metrics: list[Metrics]
    gateway: ServerProcess
    logs: Path

    def served(self, i: int) -> float:
        """Generations replica `i` has finished, however they ended."""
        values = self.metrics[i].read()
        return sum(v for k, v in values.items() if k.startswith(FINISHED))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    logs = tmp_path_factory.mktemp("replicas")
    # One llama.cpp thread each: two replicas share the machine's cores, and llama.cpp's
    # spinning threads slow to a crawl when there are more of them than cores. A long grace:
    # a draining replica exits as soon as its calls are done, however long they take here.
    flags = ("--max-sequences", "8", "--n-threads", "1", "--grace-s", "30")
    started = [llama_predictor(logs, f"llama-{i}", *flags) for i in range(2)]
    predictors = [p for p, _ in started]
    front = gateway(logs, mesh_config([p.address for p in predictors]))
    try:
        for p in predictors:
            p.start()
        front.start(needs=tuple(predictors))
        yield Replicas(predictors, [Metrics(port) for _, port in started], front, logs)
    finally:
        front.stop()
        for p in predictors:
            p.stop()


async def _stream(
    client: AsyncClient, prompt: str, max_tokens: int, first: asyncio.Event | None = None
) -> int:
    """The tokens of one greedy stream; sets `first` once the first of them has arrived."""
    tokens = 0
    async for chunk in client.predict_stream(
        MODEL, prompt=prompt, max_tokens=max_tokens, temperature=0
    ):
        tokens += chunk.token_count
        if first is not None:
            first.set()
    return tokens


async def test_concurrent_streams_spread_over_both_replicas(replicas: Replicas) -> None:
    before = [replicas.served(i) for i in range(2)]
    async with AsyncClient(replicas.gateway.address) as client:
        await asyncio.gather(*(_stream(client, p, 16) for p in PROMPTS))
    after = [replicas.served(i) for i in range(2)]
    # Least outstanding requests: eight streams started together split four and four.
    assert [a - b for a, b in zip(after, before, strict=True)] == [4, 4]


@dataclass
class Load:
    """What a steady mixed load saw: unary results, and when each stream ended and how."""

    unary_ok: int = 0
    unary_errors: list[str] = field(default_factory=list)
    streams_ok: int = 0
    stream_failures: list[tuple[float, str]] = field(default_factory=list)  # (time, code)
    # Set once each stream worker's first stream relays tokens: from then on, a replica that
    # dies breaks the streams it holds (a stream that has relayed nothing is retried instead).
    relaying: list[asyncio.Event] = field(
        default_factory=lambda: [asyncio.Event() for _ in range(4)]
    )


async def _steady_load(client: AsyncClient, load: Load, stop: asyncio.Event) -> None:
    async def unary_worker(i: int) -> None:
        while not stop.is_set():
            try:
                await client.predict(
                    MODEL, prompt=PROMPTS[i], max_tokens=4, temperature=0, timeout=30
                )
                load.unary_ok += 1
            except ServemeshError as error:
                load.unary_errors.append(f"{error.code.name}: {error}")

    async def stream_worker(i: int) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(_stream(client, PROMPTS[i], 150, load.relaying[i]), 120)
                load.streams_ok += 1
            except ServemeshError as error:
                load.stream_failures.append((time.monotonic(), error.code.name))

    # Streams first: the four start on empty replicas, two on each (least outstanding).
    await asyncio.gather(
        *(stream_worker(i) for i in range(4)), *(unary_worker(i) for i in range(4))
    )


async def test_a_killed_replica_fails_only_its_streams_and_comes_back(replicas: Replicas) -> None:
    victim, survivor = replicas.predictors[1], replicas.predictors[0]
    load, stop = Load(), asyncio.Event()
    async with AsyncClient(replicas.gateway.address) as client:
        running = asyncio.create_task(_steady_load(client, load, stop))
        # Every stream relays tokens, two on each replica, and unary calls run beside them.
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in load.relaying)), 60)
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        victim.signal(signal.SIGKILL)
        await asyncio.sleep(4)
        stop.set()
        await asyncio.wait_for(running, 240)

    assert load.unary_errors == [], "every unary call fails over to the live replica"
    assert load.unary_ok > 0 and load.streams_ok > 0
    broken = [(at - killed_at, code) for at, code in load.stream_failures]
    assert broken, "some streams ran on the killed replica"
    assert {code for _, code in broken} == {"UNAVAILABLE"}
    assert max(delay for delay, _ in broken) < 1.0, f"streams ended late: {broken}"
    seen = replicas.gateway.metrics.read()  # the gateway's own view of it
    victim_label = f"backend=llama,replica={victim.address}"
    assert seen[f"servemesh_gateway_replica_serving{{{victim_label}}}"] == 0
    assert seen["servemesh_gateway_retries_total{backend=llama}"] >= 1
    assert seen.get(
        f"servemesh_gateway_calls_total{{code=OK,method=Predict,model={MODEL},protocol=servemesh}}"
    )

    victim.process.wait()
    victim.start(needs=(survivor,))
    wait_for(lambda: replicas.served(1) == 0, 5, "the restarted replica answers metrics")
    async with AsyncClient(replicas.gateway.address) as client:
        deadline = time.monotonic() + 20
        while replicas.served(1) == 0 and time.monotonic() < deadline:
            await asyncio.gather(*(_stream(client, p, 4) for p in PROMPTS[:4]))
    assert replicas.served(1) > 0, "the restarted replica gets traffic again"


async def test_a_draining_replica_finishes_its_streams_and_gets_no_new_calls(
    replicas: Replicas,
) -> None:
    leaving, staying = replicas.predictors
    stayed_before = replicas.served(1)
    async with AsyncClient(replicas.gateway.address) as client:
        streams = [asyncio.create_task(_stream(client, p, 40)) for p in PROMPTS[:4]]
        await asyncio.sleep(0.5)  # two streams on each replica
        leaving.signal(signal.SIGTERM)  # health NOT_SERVING at once, then 2 s grace
        await asyncio.to_thread(
            wait_for, lambda: health_status(leaving.address) != "SERVING", 5, "drain began"
        )
        await asyncio.sleep(0.3)  # the gateway's Watch sees it
        assert await asyncio.gather(*(_stream(client, p, 8) for p in PROMPTS[4:])) == [8] * 4
        assert await asyncio.gather(*streams) == [40] * 4, "in-flight streams finished"
    assert leaving.process.wait(10) == 0
    assert replicas.served(1) - stayed_before == 2 + 4, "every new call went to the other"
    leaving.start(needs=(staying,))


async def test_a_dns_target_finds_its_replicas(replicas: Replicas) -> None:
    port = replicas.predictors[0].address.rsplit(":", 1)[1]
    front = gateway(replicas.logs, mesh_config(f"dns:///localhost:{port}"), name="gateway-dns")
    try:
        front.start(needs=tuple(replicas.predictors))
        async with AsyncClient(front.address) as client:
            assert await _stream(client, PROMPTS[0], 4) == 4
            prediction = await client.predict(MODEL, prompt=PROMPTS[1], max_tokens=4)
            assert prediction.usage.completion_tokens == 4
    finally:
        front.stop()


async def test_no_serving_replica_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    dead = "127.0.0.1:9"  # the discard port: nothing serves gRPC there
    front = gateway(tmp_path, mesh_config([dead]), name="gateway-dead")
    try:
        front.start(wait=False)
        wait_for(lambda: health_status(front.address) == "NOT_SERVING", 30, "gateway up")
        async with AsyncClient(front.address, max_attempts=1) as client:
            with pytest.raises(Unavailable, match=r"no serving replica.*127\.0\.0\.1:9"):
                await client.predict(MODEL, prompt="hi", max_tokens=2)
    finally:
        front.stop()


async def test_the_backend_limit_queues_then_refuses_with_resource_exhausted(
    replicas: Replicas,
) -> None:
    limits = "max_concurrency = 2\nmax_queue = 2"
    front = gateway(
        replicas.logs,
        mesh_config([p.address for p in replicas.predictors], llama_options=limits),
        name="gateway-limited",
    )
    try:
        front.start(needs=tuple(replicas.predictors))
        async with AsyncClient(front.address) as client:
            results = await asyncio.gather(
                *(_stream(client, p, 30) for p in PROMPTS[:6]), return_exceptions=True
            )
            outcomes = [r if isinstance(r, int) else r.code.name for r in results]
            assert collections.Counter(outcomes) == {30: 4, "RESOURCE_EXHAUSTED": 2}, results
            refused = next(r for r in results if not isinstance(r, int))
            assert "max_concurrency=2, max_queue=2" in str(refused)
            assert await _stream(client, PROMPTS[0], 4) == 4, "the limit frees its slots"
    finally:
        front.stop()
