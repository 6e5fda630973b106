"""Exits 0 when TorchServe's HTTP /ping answers 200, 1 otherwise: the image's health check.

With token authorization on, /ping wants the inference key too: it is read from
key_file.json in the run folder. Port and folder come from launch.py's environment variables.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def main() -> None:
    port = os.environ.get("SERVEMESH_TORCHSERVE_HTTP_PORT", "8080")
    run_dir = Path(os.environ.get("SERVEMESH_TORCHSERVE_RUN_DIR", "run/torchserve"))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ping")
    key_file = run_dir / "key_file.json"
    if key_file.exists():
        key = json.loads(key_file.read_text())["inference"]["key"]
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            print(response.read().decode(errors="replace").strip())
    except (OSError, urllib.error.URLError, ValueError, KeyError) as error:
        sys.exit(f"TorchServe /ping on port {port}: {error}")


if __name__ == "__main__":
    main()
