"""Backends: the model servers behind the gateway, one class per kind of server."""

from __future__ import annotations

from gateway.backends.base import Backend
from gateway.backends.servemesh import ServemeshBackend
from gateway.backends.torchserve import TorchServeBackend
from gateway.config import BackendConfig, ConfigError, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES

BACKEND_KINDS: dict[str, type[Backend]] = {
    "servemesh": ServemeshBackend,
    "torchserve": TorchServeBackend,
}


def make_backend(
    config: BackendConfig, models: list[ModelConfig], max_message_bytes: int = MAX_MESSAGE_BYTES
) -> Backend:
    """The backend for one [backends.NAME] table and the models routed to it; its channels
    take messages as large as the gateway's server does."""
    try:
        kind = BACKEND_KINDS[config.kind]
    except KeyError:
        raise ConfigError(
            f"backends.{config.name}.kind is {config.kind!r}; known kinds: {sorted(BACKEND_KINDS)}"
        ) from None
    return kind(config, models, max_message_bytes)
