"""Prometheus metrics of the gateway: calls by model and outcome, retries, and what each
backend's replicas and concurrency limit are doing. With several workers (gateway.workers)
each gauge says how its workers' values add up: counts of calls add, a replica serves if any
worker sees it serve."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CALLS = Counter(
    "servemesh_gateway_calls",
    "Prediction calls that ended, by model, protocol (servemesh, openai, kserve), method "
    "and status code.",
    ["model", "protocol", "method", "code"],
)
RETRIES = Counter(
    "servemesh_gateway_retries",
    "Calls sent again to another replica after UNAVAILABLE.",
    ["backend"],
)
REPLICA_SERVING = Gauge(
    "servemesh_gateway_replica_serving",
    "1 while a replica serves (by its health source), 0 while it is out.",
    ["backend", "replica"],
    multiprocess_mode="livemax",
)
REPLICA_OUTSTANDING = Gauge(
    "servemesh_gateway_replica_outstanding",
    "Calls in flight on a replica: what least-outstanding balancing compares.",
    ["backend", "replica"],
    multiprocess_mode="livesum",
)
BACKEND_RUNNING = Gauge(
    "servemesh_gateway_backend_running",
    "Calls a backend runs now.",
    ["backend"],
    multiprocess_mode="livesum",
)
BACKEND_WAITING = Gauge(
    "servemesh_gateway_backend_waiting",
    "Calls waiting for a slot of a backend's max_concurrency.",
    ["backend"],
    multiprocess_mode="livesum",
)
