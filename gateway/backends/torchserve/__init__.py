"""TorchServe behind the gateway: the backend, its codec, its errors, its key file, its options."""

from __future__ import annotations

from gateway.backends.torchserve.backend import TorchServeBackend

__all__ = ["TorchServeBackend"]
