"""The Node.js client (clients/node) passes its own tests against the session's mesh."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / "clients" / "node"


# The mesh's start (when this test is the first to need it) and node's own run, each with a
# limit of its own, fit in this.
@pytest.mark.timeout(600)
def test_node_client_against_the_mesh(mesh) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Node.js client needs Node.js 18 or newer")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            "clients/node has no node_modules: run `make clients/node/node_modules/.installed`"
            " (make test does)"
        )
    env = {
        **os.environ,
        "SERVEMESH_ADDRESS": mesh.gateway.address,
        # Lets the cancellation test see that the predictor stopped generating.
        "SERVEMESH_LLAMA_METRICS_URL": mesh.metrics.url,
        "NO_COLOR": "1",
    }
    # The tests of one file run in order; the files run side by side, and only one of them
    # calls the mesh, so the mesh sees one call at a time.
    command = [node, "--test", "--test-reporter=spec", "clients/node/test/"]
    try:
        result = subprocess.run(
            command,
            cwd=NODE_DIR.parent.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"node --test ran past 240 s:\n{_text(error.stdout)}{_text(error.stderr)}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"node --test failed ({result.returncode}):\n{output}"
    assert "SERVEMESH_ADDRESS is not set" not in output, f"the mesh tests did not run:\n{output}"
    assert re.search(r"\bpass [1-9]", output), output


def _text(captured: bytes | str | None) -> str:
    if isinstance(captured, bytes):
        return captured.decode(errors="replace")
    return captured or ""
