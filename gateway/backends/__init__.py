"""Backends: the model servers behind the gateway, one class per kind of server."""

from __future__ import annotations

from gateway.backends.base import Backend
from gateway.backends.servemesh import ServemeshBackend
from gateway.backends.torchserve import TorchServeBackend
from gateway.config import BackendConfig, ConfigError, ModelConfig

BACKEND_KINDS: dict[str, type[Backend]] = {
    "servemesh": ServemeshBackend,
    "torchserve": TorchServeBackend,
}


def make_backend(config: BackendConfig, models: list[ModelConfig]) -> Backend:
    """The backend for one [backends.NAME] table and the models routed to it."""
    try:
        kind = BACKEND_KINDS[config.kind]
    except KeyError:
        raise ConfigError(
            f"backends.{config.name}.kind is {config.kind!r}; known kinds: {sorted(BACKEND_KINDS)}"
        ) from None
    return kind(config, models)
