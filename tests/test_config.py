"""The mesh configuration file: what is accepted and what is refused, with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.backends import make_backend
from gateway.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_mesh_config_loads() -> None:
    config = load_config(ROOT / "deploy" / "mesh.toml")
    assert config.models["smollm2-135m-instruct"].backend == "llama"
    assert config.backends["llama"].kind == "servemesh"


def test_backend_model_renames_a_model_at_its_backend() -> None:
    config = parse_config(
        {
            "backends": {"b": {"kind": "servemesh", "target": "x:1"}},
            "models": {"public": {"backend": "b", "backend_model": "private"}},
        }
    )
    assert config.models["public"].backend_model == "private"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backends": {"b": {"kind": "servemesh", "target": "x:1"}}}, "no [models.NAME]"),
        ({"backends": {"b": {"target": "x:1"}}, "models": {}}, "needs 'kind'"),
        ({"models": {"m": {"backend": "nope"}}}, "models.m.backend is 'nope'"),
        ({"backends": "x", "models": {}}, "[backends] must be a table"),
    ],
)
def test_bad_config_is_refused_with_a_message(data, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data)


def test_unknown_backend_kind_is_refused(tmp_path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text('[backends.b]\nkind = "triton"\ntarget = "x:1"\n[models.m]\nbackend = "b"\n')
    with pytest.raises(ConfigError, match="known kinds"):
        make_backend(load_config(path).backends["b"], [])


def test_malformed_toml_names_the_file(tmp_path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[models\n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_config(path)
