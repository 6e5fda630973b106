"""Fault injection for tests only: a TorchServe handler that kills its own worker on request.

Never packed by `make models` and never routed by deploy/mesh.toml; tests/test_torchserve_crash.py
archives it into a temporary model store. A request whose `text` input is "crash" ends the
worker process with SIGKILL (what the kernel's OOM killer does), "exit" ends it with
os._exit(1) (a handler that dies on its own, as a crash in native code does); any other text
is answered with {"length": its length in characters, "pid": the worker's process id}, so a
test can tell the worker that served a call from the one that served before a crash.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

EXIT_STATUS = 1


def _text(row: dict[str, Any]) -> str:
    value = row.get("text", row.get("body", b""))
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else json.dumps(value)


class CrashOnRequest:
    """Answers small echo requests; dies on "crash" or "exit"."""

    def initialize(self, context: Any) -> None:
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        answers = []
        for row in data:
            text = _text(row)
            if text == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if text == "exit":
                # os._exit skips Python's clean-up, as a segfault would: no response is sent.
                os._exit(EXIT_STATUS)
            answers.append(json.dumps({"length": len(text), "pid": os.getpid()}).encode())
        return answers
