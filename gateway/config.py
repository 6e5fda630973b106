"""The mesh configuration: which backends exist and which models each one serves (TOML)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration file is malformed; the message says where."""


@dataclass(frozen=True)
class BackendConfig:
    """A model server the gateway calls, at one or more replica addresses (`targets`); a
    `dns:///NAME:PORT` target stands for every address NAME resolves to."""

    name: str
    kind: str
    targets: tuple[str, ...]
    options: dict[str, Any]

    @property
    def target(self) -> str:
        """The first replica address, for backends that have exactly one."""
        return self.targets[0]


@dataclass(frozen=True)
class ModelConfig:
    """A model the gateway serves: its public name, backend, name at the backend, and the
    backend-specific options of its table (such as a TorchServe model's task)."""

    name: str
    backend: str
    backend_model: str
    options: dict[str, Any]


@dataclass(frozen=True)
class RequestLimits:
    """What the gateway accepts in one request, checked before it calls a backend. The
    token limits (prompt length, max_tokens) are the model's own and checked by its server."""

    max_inputs: int = 16
    max_input_bytes: int = 8 * 1024 * 1024
    max_prompt_chars: int = 64 * 1024
    max_chat_messages: int = 256
    max_stop_sequences: int = 8
    max_stop_sequence_chars: int = 128


@dataclass(frozen=True)
class MeshConfig:
    backends: dict[str, BackendConfig]
    models: dict[str, ModelConfig]
    limits: RequestLimits = RequestLimits()


def _limits(raw: dict[str, Any], where: str) -> RequestLimits:
    known = RequestLimits.__dataclass_fields__
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: limits.{key} is unknown; the limits are {sorted(known)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: limits.{key} is {value!r}; it must be a positive integer")
    return RequestLimits(**raw)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _targets(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    """The replica addresses of a backend table: `target = "..."` or `targets = [...]`."""
    if ("target" in raw) == ("targets" in raw):
        raise ConfigError(f'{where} needs either target = "HOST:PORT" or targets = [...]')
    targets = [raw.pop("target")] if "target" in raw else raw.pop("targets")
    if (
        not isinstance(targets, list)
        or not targets
        or not all(isinstance(t, str) and t for t in targets)
    ):
        raise ConfigError(f"{where}: targets must be a non-empty list of HOST:PORT strings")
    if len(set(targets)) != len(targets):
        raise ConfigError(f"{where}: targets lists an address twice")
    return tuple(targets)


def parse_config(data: dict[str, Any], where: str = "config") -> MeshConfig:
    backends: dict[str, BackendConfig] = {}
    for name, raw in _table(data, "backends", where).items():
        raw = dict(raw)
        if "kind" not in raw:
            raise ConfigError(f"{where}: backends.{name} needs 'kind'")
        kind = raw.pop("kind")
        backends[name] = BackendConfig(name, kind, _targets(raw, f"{where}: backends.{name}"), raw)
    models: dict[str, ModelConfig] = {}
    for name, raw in _table(data, "models", where).items():
        backend = raw.get("backend")
        if backend not in backends:
            raise ConfigError(
                f"{where}: models.{name}.backend is {backend!r}; "
                f"the backends are {sorted(backends)}"
            )
        options = {k: v for k, v in raw.items() if k not in ("backend", "backend_model")}
        models[name] = ModelConfig(name, backend, raw.get("backend_model", name), options)
    if not models:
        raise ConfigError(f"{where}: no [models.NAME] table; the gateway would serve nothing")
    return MeshConfig(backends, models, _limits(_table(data, "limits", where), where))


def load_config(path: str | Path) -> MeshConfig:
    """Reads and checks a mesh configuration file."""
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: {error}") from None
    return parse_config(data, str(path))
