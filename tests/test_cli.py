"""The `servemesh` command against the real gateway."""

from __future__ import annotations

import json
import subprocess

from tests.servers import BIN, MODEL


def servemesh(mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "servemesh"), "--target", mesh.gateway.address, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_models_lists_the_model_and_its_capabilities(mesh) -> None:
    result = servemesh(mesh, "models")
    assert result.returncode == 0, result.stderr
    assert MODEL in result.stdout and "llama_cpp" in result.stdout
    models = json.loads(servemesh(mesh, "models", "--json").stdout)
    (model,) = [m for m in models if m["name"] == MODEL]
    assert model["streaming"] is True and model["input_kinds"] == ["prompt", "chat"]


def test_predict_and_stream_print_the_same_greedy_text(mesh) -> None:
    args = ["Name a color.", "--max-tokens", "12", "--temperature", "0"]
    predicted = servemesh(mesh, "predict", MODEL, *args)
    streamed = servemesh(mesh, "stream", MODEL, *args)
    assert predicted.returncode == 0 and streamed.returncode == 0, predicted.stderr
    assert predicted.stdout.strip() and predicted.stdout.strip() == streamed.stdout.strip()
    assert "completion" in streamed.stderr
    chunks = [
        json.loads(line)
        for line in servemesh(mesh, "stream", MODEL, *args, "--json").stdout.splitlines()
    ]
    assert chunks[-1]["finish_reason"] and chunks[-1]["usage"]["completion_tokens"] >= 1


def test_errors_exit_non_zero_with_the_status(mesh) -> None:
    result = servemesh(mesh, "predict", "nope", "hi")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and MODEL in result.stderr


def test_health_of_a_model(mesh) -> None:
    result = servemesh(mesh, "health", f"model/{MODEL}")
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING")


def test_usage_mistakes_are_usage_errors_before_any_call() -> None:
    """Exit 2 with argparse's usage line, not a gRPC status: no server is needed to see it."""
    cases = [
        (["predict", MODEL], "give a prompt"),
        (["predict", MODEL, "hi", "--input", "text=x"], "not both"),
        (["stream", MODEL, "hi", "--raw", "--system", "be brief"], "--system goes with"),
    ]
    for args, message in cases:
        result = subprocess.run(
            [str(BIN / "servemesh"), "--target", "127.0.0.1:1", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "usage: servemesh" in result.stderr and message in result.stderr
        assert "UNKNOWN" not in result.stderr
