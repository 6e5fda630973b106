"""The mesh configuration: which backends exist and which models each one serves (TOML)."""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

OptionsT = TypeVar("OptionsT")
RUN_DIR_ENV = "SERVEMESH_GATEWAY_RUN_DIR"
DEFAULT_RUN_DIR = "run"
# A backend option's string may name the run folder, where `make up` puts what its processes
# write (TorchServe's key file), so one mesh.toml serves any RUN_DIR.
RUN_DIR_PLACEHOLDER = "{run_dir}"


class ConfigError(ValueError):
    """The configuration file is malformed; the message says where."""


@dataclass(frozen=True)
class BackendConfig:
    """A model server the gateway calls, at one or more replica addresses (`targets`); a
    `dns:///NAME:PORT` target stands for every address NAME resolves to. `options` are the
    table's other keys as written; the backend's kind checks them (`parse_options`)."""

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
    # A response_format as it is serialized: its JSON Schema text, mostly. The server that
    # enforces it bounds the schema and the grammar it makes as well.
    max_response_format_bytes: int = 64 * 1024
    # The bytes of a whole request, refused by gRPC from its length prefix before the body
    # is read, and of a whole text_generation input, refused before the body is parsed.
    max_request_bytes: int = 16 * 1024 * 1024
    max_text_generation_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class MeshConfig:
    backends: dict[str, BackendConfig]
    models: dict[str, ModelConfig]
    limits: RequestLimits = RequestLimits()


# Field metadata for parse_options: the range a number must be in.
POSITIVE: Mapping[str, str] = {"check": "positive"}
NON_NEGATIVE: Mapping[str, str] = {"check": "non_negative"}
NON_EMPTY: Mapping[str, str] = {"check": "non_empty"}


def parse_options(
    cls: type[OptionsT],
    raw: Mapping[str, Any],
    where: str,
    subject: str = "this table",
    also_known: Iterable[str] = (),
) -> OptionsT:
    """The frozen dataclass `cls` from the keys of table `where`. An unknown key, a missing
    required one, or a value of the wrong type or range is a ConfigError that names it;
    `also_known` are keys of the table that the caller has read already (listed as known)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in fields:
            known = sorted({*fields, *also_known})
            raise ConfigError(
                f"{where}: unknown option {key!r} for {subject}; the known options are "
                f"{', '.join(known)}"
            )
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _typed(hints[name], raw[name], f"{where}.{name}", f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where} needs {name}")
    return cls(**values)


_TYPE_NAMES = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a number",
    str: "a string",
}


def _typed(kind: Any, value: Any, where: str, metadata: Mapping[str, Any]) -> Any:
    """`value` as a `kind` (bool, int, float, str or an Enum), within its field's range."""
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(
                f"{where} is {value!r}; it must be one of {[m.value for m in kind]}"
            ) from None
    # TOML has its own booleans: true is not 1, and "false" is not false.
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if kind not in ok:
        raise TypeError(f"{where}: options of type {kind!r} are not supported")
    if not ok[kind]:
        raise ConfigError(f"{where} is {value!r}; it must be {_TYPE_NAMES[kind]}")
    check = metadata.get("check")
    if check == "positive" and value <= 0:
        raise ConfigError(f"{where} is {value!r}; it must be more than 0")
    if check == "non_negative" and value < 0:
        raise ConfigError(f"{where} is {value!r}; it must be 0 or more")
    if check == "non_empty" and not value:
        raise ConfigError(f"{where} is empty")
    return float(value) if kind is float else value


def _expand_run_dir(options: dict[str, Any], run_dir: str) -> dict[str, Any]:
    return {
        k: v.replace(RUN_DIR_PLACEHOLDER, run_dir) if isinstance(v, str) else v
        for k, v in options.items()
    }


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


def parse_config(
    data: dict[str, Any], where: str = "config", run_dir: str = DEFAULT_RUN_DIR
) -> MeshConfig:
    """The mesh from a parsed TOML document; `{run_dir}` in a backend option's string is
    `run_dir`. Backend and model options are checked by their backend's kind."""
    backends: dict[str, BackendConfig] = {}
    for name, raw in _table(data, "backends", where).items():
        raw = dict(raw)
        if "kind" not in raw:
            raise ConfigError(f"{where}: backends.{name} needs 'kind'")
        kind = raw.pop("kind")
        targets = _targets(raw, f"{where}: backends.{name}")
        backends[name] = BackendConfig(name, kind, targets, _expand_run_dir(raw, run_dir))
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


def load_config(path: str | Path, run_dir: str | None = None) -> MeshConfig:
    """Reads and checks a mesh configuration file. `run_dir` defaults to the environment's
    SERVEMESH_GATEWAY_RUN_DIR (set by `make up` for the gateway it starts), else "run"."""
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: {error}") from None
    return parse_config(data, str(path), run_dir)
