"""servemesh: the Python SDK for the servemesh gRPC serving mesh."""

from servemesh.aio import AsyncClient
from servemesh.client import Client
from servemesh.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServemeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from servemesh.types import ClassScore, Model, Prediction, StreamChunk, Usage

__all__ = [
    "AsyncClient",
    "Cancelled",
    "ClassScore",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "Model",
    "NotFound",
    "PermissionDenied",
    "Prediction",
    "ResourceExhausted",
    "ServemeshError",
    "StreamChunk",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Usage",
]
