"""What every servemesh TorchServe handler shares: reading inputs, writing JSON, bad input.

Packed into each model archive beside the handler, which imports it as a top-level module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from ts.utils.util import PredictionException


class BadInput(PredictionException):
    """An input the handler cannot use; TorchServe answers it with status 400 and the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


def as_bytes(value: Any) -> bytes:
    """An input value as bytes, however TorchServe's frontend decoded it."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def main_input(row: dict[str, Any], names: tuple[str, ...]) -> bytes:
    """The request's main input: the first of `names` present, else the only value."""
    for name in names:
        if name in row:
            return as_bytes(row[name])
    if len(row) == 1:
        return as_bytes(next(iter(row.values())))
    raise BadInput(f"send the input as one of {', '.join(names)}; got {', '.join(row) or 'none'}")


def optional_int(row: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer option sent as text, checked against [low, high]."""
    if name not in row:
        return default
    text = as_bytes(row[name]).decode(errors="replace").strip()
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise BadInput(f"{name} must be between {low} and {high}, got {value}")
    return value


# A status phrase longer than this is cut: it travels on to the client in a gRPC trailer.
MAX_PHRASE_CHARS = 1000


def status_phrase(message: str) -> str:
    """`message` as TorchServe can carry it as a per-request status phrase: ASCII, non-ASCII
    characters escaped (`\\xe9`), cut at MAX_PHRASE_CHARS. TorchServe's worker frames the
    phrase by its length in characters, not bytes: one non-ASCII character, such as one a
    caller sent in an input's name or value, desynchronizes the frame and the frontend drops
    the worker ("Worker died"), failing every request it held."""
    text = message.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= MAX_PHRASE_CHARS else text[:MAX_PHRASE_CHARS] + "..."


def to_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


T = TypeVar("T")


class Batch:
    """A TorchServe batch, parsed request by request: a bad request gets its own status 400
    and is left out, so it does not fail the other requests that share its batch."""

    def __init__(
        self, data: list[dict[str, Any]], context: Any, parse: Callable[[dict[str, Any]], T]
    ) -> None:
        self.size = len(data)
        self.responses: list[bytes] = [b""] * len(data)
        self.indices: list[int] = []
        self.items: list[T] = []
        for i, row in enumerate(data):
            try:
                self.items.append(parse(row))
                self.indices.append(i)
            except BadInput as error:
                context.set_response_status(400, status_phrase(error.message), i)
                self.responses[i] = to_json({"error": error.message})

    def answer(self, outputs: list[bytes]) -> list[bytes]:
        """All responses, with `outputs` (one per good request) in their places."""
        for i, output in zip(self.indices, outputs, strict=True):
            self.responses[i] = output
        return self.responses
