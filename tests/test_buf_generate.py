"""buf.gen.yaml generates servemesh.v1 clients offline, with each plugin whose tools are here.

Each plugin runs on its own, so a missing compiler skips that plugin and names what to install
instead of failing the rest: with only .venv, the Python messages and stubs still run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / ".venv" / "bin" / "buf"
TEMPLATE = yaml.safe_load((ROOT / "buf.gen.yaml").read_text())

# What each plugin must write (under its out folder), and text that shows the messages or the
# gRPC service made it into the code.
EXPECTED = {
    "python": {"servemesh/v1/prediction_service_pb2.py": "PredictStreamRequest"},
    "pyi": {"servemesh/v1/prediction_service_pb2.pyi": "class PredictRequest"},
    "grpc_python_plugin": {
        "servemesh/v1/prediction_service_pb2_grpc.py": "class PredictionServiceStub"
    },
    "cpp": {
        "servemesh/v1/prediction_service.pb.h": "class PredictRequest",
        "servemesh/v1/generation.pb.cc": "GenerationParameters",
    },
    "grpc_cpp_plugin": {"servemesh/v1/prediction_service.grpc.pb.h": "class PredictionService"},
    "java": {"servemesh/v1/PredictionServiceOuterClass.java": "PredictRequest"},
    "grpc_java_plugin": {"servemesh/v1/PredictionServiceGrpc.java": "newBlockingStub"},
    "csharp": {
        "PredictionService.cs": "class PredictRequest",
        "Inference.cs": "class InferenceValue",
    },
}


def _name(plugin: dict) -> str:
    return plugin.get("protoc_builtin") or _tool(plugin)


def _tool(plugin: dict) -> str:
    """The program a plugin runs: protoc for a builtin one, unless it names its own."""
    if "local" in plugin:
        local = plugin["local"]
        return local[0] if isinstance(local, list) else local
    return plugin.get("protoc_path", "protoc")


def _missing(tool: str) -> bool:
    return shutil.which(tool) is None and not (ROOT / tool).is_file()


PLUGINS = {_name(p): p for p in TEMPLATE["plugins"]}


def test_the_template_holds_the_plugins_the_test_checks() -> None:
    assert TEMPLATE["version"] == "v2"
    assert sorted(PLUGINS) == sorted(EXPECTED)
    for plugin in TEMPLATE["plugins"]:
        assert "remote" not in plugin, "remote plugins need buf.build, which CI cannot reach"


def test_python_needs_nothing_but_the_venv() -> None:
    for name in ("python", "pyi"):
        assert not _missing(_tool(PLUGINS[name])), f"{name}: {_tool(PLUGINS[name])} missing"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_buf_generate(name: str, tmp_path: Path) -> None:
    plugin = PLUGINS[name]
    if _missing(_tool(plugin)):
        pytest.skip(f"{name}: {_tool(plugin)} is not installed (see buf.gen.yaml)")
    template = tmp_path / "buf.gen.yaml"
    template.write_text(yaml.safe_dump({**TEMPLATE, "plugins": [plugin]}))
    out = tmp_path / "out"
    result = subprocess.run(
        [str(BUF), "generate", "--template", str(template), "-o", str(out)],
        cwd=ROOT,  # buf.yaml there names the input: protos/, without TorchServe's or KServe's API
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    folder = out / plugin["out"]
    for path_name, text in EXPECTED[name].items():
        path = folder / path_name
        assert path.is_file(), f"{path_name} missing; generated: {sorted(folder.rglob('*'))}"
        assert text in path.read_text(), f"{path_name} lacks {text!r}"
    if name != "csharp":  # C# names files after the .proto alone, without its folder
        roots = {p.relative_to(folder).parts[0] for p in folder.rglob("*") if p.is_file()}
        assert roots == {"servemesh"}, f"only servemesh.v1 is the contract, not {roots}"
