"""Channel settings shared by both clients: retry policy, message sizes, default deadline."""

from __future__ import annotations

import json
from typing import Any

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_ATTEMPTS = 4
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Calls that are safe to repeat when the server was unavailable. A stream is left out: once
# a token has reached the caller, a silent retry would duplicate it.
_RETRYABLE_METHODS = [
    {"service": "servemesh.v1.PredictionService", "method": "Predict"},
    {"service": "servemesh.v1.PredictionService", "method": "ListModels"},
    {"service": "servemesh.v1.PredictionService", "method": "GetModel"},
    {"service": "grpc.health.v1.Health", "method": "Check"},
]


def retry_service_config(max_attempts: int) -> dict[str, Any]:
    """gRPC's own retry policy: exponential backoff on UNAVAILABLE, within the deadline."""
    return {
        "methodConfig": [
            {
                "name": _RETRYABLE_METHODS,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }


def channel_options(max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[tuple[str, Any]]:
    """Options for a client channel; max_attempts 1 turns retries off."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if max_attempts > 1:
        options += [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(retry_service_config(max_attempts))),
        ]
    else:
        options.append(("grpc.enable_retries", 0))
    return options


class _Default:
    """Marks 'use the client's default deadline', since None means 'no deadline'."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()
Timeout = float | None | _Default


def resolve_timeout(timeout: Timeout, default: float | None) -> float | None:
    """The deadline in seconds for one call, or None for none."""
    return default if isinstance(timeout, _Default) else timeout
