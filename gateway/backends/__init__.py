"""Backends: the model servers behind the gateway, one class per kind of server."""

from __future__ import annotations

from typing import Any

from gateway.backends.base import Backend
from gateway.backends.servemesh import ServemeshBackend
from gateway.backends.torchserve import TorchServeBackend
from gateway.config import BackendConfig, ConfigError, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES

BACKEND_KINDS: dict[str, type[Backend[Any, Any]]] = {
    "servemesh": ServemeshBackend,
    "torchserve": TorchServeBackend,
}


def backend_kind(config: BackendConfig) -> type[Backend[Any, Any]]:
    """The class for a [backends.NAME] table's `kind`."""
    try:
        return BACKEND_KINDS[config.kind]
    except KeyError:
        raise ConfigError(
            f"backends.{config.name}.kind is {config.kind!r}; known kinds: {sorted(BACKEND_KINDS)}"
        ) from None


def check_backend(config: BackendConfig, models: list[ModelConfig]) -> None:
    """Checks a backend's table and its models' tables as its kind reads them, without
    opening a connection; a ConfigError says what is wrong."""
    kind = backend_kind(config)
    kind.parse_options(config)
    kind.parse_models(models)


def make_backend(
    config: BackendConfig, models: list[ModelConfig], max_message_bytes: int = MAX_MESSAGE_BYTES
) -> Backend[Any, Any]:
    """The backend for one [backends.NAME] table and the models routed to it; its channels
    take messages as large as the gateway's server does. Its options are checked first."""
    return backend_kind(config)(config, models, max_message_bytes)
