"""Backend and model options as each backend kind reads them: typed, and refused when unknown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.backends import check_backend
from gateway.backends.base import NoModelOptions
from gateway.backends.servemesh import ServemeshBackend, ServemeshOptions
from gateway.backends.torchserve import TorchServeBackend
from gateway.backends.torchserve.options import Task, TorchServeModel, TorchServeOptions
from gateway.config import ConfigError, MeshConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
TORCHSERVE = {"kind": "torchserve", "target": "ts:7070", "management_target": "ts:7071"}
SERVEMESH = {"kind": "servemesh", "target": "llama:50061"}


def mesh(backend: dict[str, Any], **models: dict[str, Any]) -> MeshConfig:
    """A mesh with backend "b" and `models` routed to it (one model "m" by default)."""
    tables = {n: {"backend": "b", **t} for n, t in (models or {"m": {}}).items()}
    return parse_config({"backends": {"b": backend}, "models": tables})


def check(config: MeshConfig) -> None:
    check_backend(config.backends["b"], list(config.models.values()))


def refused(config: MeshConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check(config)


def test_the_shipped_mesh_config_passes_every_backend_kind() -> None:
    config = load_config(ROOT / "deploy" / "mesh.toml", run_dir="/srv/mesh")
    for name, backend in config.backends.items():
        check_backend(backend, [m for m in config.models.values() if m.backend == name])
    options = TorchServeBackend.parse_options(config.backends["torchserve"])
    assert options == TorchServeOptions(
        management_target="localhost:7071", key_file="/srv/mesh/torchserve/key_file.json"
    )
    text = TorchServeBackend.parse_model_options(config.models["smollm2-135m-torch"])
    assert text == TorchServeModel(
        task=Task.TEXT_GENERATION, streaming=True, context_length=2048, max_tokens=512
    )
    assert text.limits.default_max_tokens == 256


def test_options_are_typed_with_their_defaults() -> None:
    config = mesh({**SERVEMESH, "max_attempts": 2, "resolve_interval_s": 1, "max_queue": 4})
    assert ServemeshBackend.parse_options(config.backends["b"]) == ServemeshOptions(
        max_attempts=2, resolve_interval_s=1.0, max_queue=4
    )
    assert ServemeshBackend.parse_model_options(config.models["m"]) == NoModelOptions()
    model = mesh(TORCHSERVE, m={"task": "embedding"}).models["m"]
    assert TorchServeBackend.parse_model_options(model) == TorchServeModel(task=Task.EMBEDDING)
    assert TorchServeModel().task is Task.GENERIC and TorchServeModel().streaming is False


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (
            {**SERVEMESH, "max_attempt": 3},
            "backends.b: unknown option 'max_attempt' for a servemesh backend; the known "
            "options are api_key_env, kind, max_attempts, max_concurrency, max_queue, "
            "resolve_interval_s, target, targets, tls_ca, tls_cert, tls_key, tls_server_name",
        ),
        (
            {**TORCHSERVE, "keyfile": "k.json"},
            "backends.b: unknown option 'keyfile' for a torchserve backend; the known options "
            "are key_file, kind, management_port, management_target, max_concurrency, "
            "max_queue, resolve_interval_s, target, targets, tls_ca, tls_cert, tls_key, "
            "tls_server_name",
        ),
        # A servemesh backend's option means nothing to TorchServe.
        (
            {**TORCHSERVE, "max_attempts": 3},
            "backends.b: unknown option 'max_attempts' for a torchserve backend",
        ),
    ],
    ids=["servemesh", "torchserve", "other-kinds-option"],
)
def test_an_unknown_backend_option_is_refused_with_the_known_ones(backend, message) -> None:
    refused(mesh(backend), message)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (
            {**SERVEMESH, "max_attempts": "3"},
            "backends.b.max_attempts is '3'; it must be an integer",
        ),
        ({**SERVEMESH, "max_attempts": 0}, "backends.b.max_attempts is 0; it must be more than 0"),
        (
            {**SERVEMESH, "resolve_interval_s": 0},
            "backends.b.resolve_interval_s is 0; it must be more than 0",
        ),
        ({**SERVEMESH, "max_queue": -1}, "backends.b.max_queue is -1; it must be 0 or more"),
        (
            {**SERVEMESH, "max_concurrency": True},
            "backends.b.max_concurrency is True; it must be an integer",
        ),
        ({**SERVEMESH, "tls_ca": 7}, "backends.b.tls_ca is 7; it must be a string"),
        (
            {k: v for k, v in TORCHSERVE.items() if k != "management_target"},
            'backends.b needs either management_target = "HOST:PORT" (one TorchServe) or '
            "management_port = PORT",
        ),
        (
            {**TORCHSERVE, "management_port": 7071},
            'backends.b needs either management_target = "HOST:PORT" (one TorchServe) or '
            "management_port = PORT",
        ),
        ({**TORCHSERVE, "management_port": -1}, "backends.b.management_port is -1"),
    ],
)
def test_a_backend_option_of_the_wrong_type_or_range_is_refused(backend, message) -> None:
    refused(mesh(backend), message)


REPLICA_TARGETS = pytest.mark.parametrize(
    "targets",
    [
        {"targets": ["10.0.0.1:7070", "10.0.0.2:7070"]},
        {"target": "dns:///torchserve.svc:7070"},
        {"targets": ["dns:///torchserve.svc:7070"]},
    ],
    ids=["two-targets", "dns-target", "dns-in-targets"],
)


@REPLICA_TARGETS
def test_torchserve_replicas_find_management_by_port(targets) -> None:
    config = mesh({"kind": "torchserve", "management_port": 7071, **targets})
    check(config)
    options = TorchServeBackend.parse_options(config.backends["b"])
    assert options.management_address("10.0.0.2:7070") == "10.0.0.2:7071"
    assert options.management_address("[fd00::5]:7070") == "[fd00::5]:7071"


@REPLICA_TARGETS
def test_torchserve_replicas_need_a_management_port_and_no_key_file(targets) -> None:
    one_address = {"kind": "torchserve", "management_target": "ts:7071", **targets}
    refused(mesh(one_address), "give management_port = PORT, the port of each replica's")
    keyed = {"kind": "torchserve", "management_port": 7071, "key_file": "k.json", **targets}
    refused(mesh(keyed), "each TorchServe writes keys of its own")


@pytest.mark.parametrize(
    ("backend", "model", "message"),
    [
        (
            TORCHSERVE,
            {"task": "text_generation", "stream": True},
            "models.m: unknown option 'stream' for a model of a torchserve backend; the known "
            "options are backend, backend_model, context_length, max_tokens, streaming, task",
        ),
        (
            SERVEMESH,
            {"task": "embedding"},
            "models.m: unknown option 'task' for a model of a servemesh backend; the known "
            "options are backend, backend_model",
        ),
        (
            TORCHSERVE,
            {"task": "translation"},
            "models.m.task is 'translation'; it must be one of ['image_classification', "
            "'embedding', 'text_generation', 'generic']",
        ),
        (
            TORCHSERVE,
            {"task": "text_generation", "streaming": "true"},
            "models.m.streaming is 'true'; it must be a boolean",
        ),
        (
            TORCHSERVE,
            {"task": "text_generation", "max_tokens": 0},
            "models.m.max_tokens is 0; it must be more than 0",
        ),
        (
            TORCHSERVE,
            {"task": "text_generation", "context_length": 2048.0},
            "models.m.context_length is 2048.0; it must be an integer",
        ),
        (
            TORCHSERVE,
            {"task": "embedding", "max_tokens": 64},
            "models.m.max_tokens is for text_generation models; this model's task is embedding",
        ),
    ],
    ids=[
        "torchserve-unknown",
        "servemesh-reads-none",
        "unknown-task",
        "string-bool",
        "zero-max-tokens",
        "float-int",
        "text-option-on-embedding",
    ],
)
def test_a_bad_model_option_is_refused(backend, model, message) -> None:
    refused(mesh(backend, m=model), message)


def test_two_names_for_one_backend_model_need_the_same_options() -> None:
    text = {"backend_model": "llm", "task": "text_generation"}
    check(mesh(TORCHSERVE, a=text, b=dict(text)))  # an alias is fine
    refused(
        mesh(TORCHSERVE, a=text, b={**text, "streaming": True}),
        "models.a and models.b both route to 'llm' at backend 'b' with different options",
    )


def test_run_dir_in_a_backend_option_is_the_gateways_run_folder(tmp_path, monkeypatch) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(
        '[backends.b]\nkind = "torchserve"\ntarget = "ts:7070"\nmanagement_target = "ts:7071"\n'
        'key_file = "{run_dir}/torchserve/key_file.json"\n[models.m]\nbackend = "b"\n'
    )

    def key_file(**kwargs: Any) -> str:
        return load_config(path, **kwargs).backends["b"].options["key_file"]

    monkeypatch.delenv("SERVEMESH_GATEWAY_RUN_DIR", raising=False)
    assert key_file() == "run/torchserve/key_file.json"  # as before, from the repository root
    monkeypatch.setenv("SERVEMESH_GATEWAY_RUN_DIR", "/tmp/x")
    assert key_file() == "/tmp/x/torchserve/key_file.json"
    assert key_file(run_dir="/srv/run") == "/srv/run/torchserve/key_file.json"
