"""The request id that a servemesh server sends back in a call's metadata, as clients read it:
the id its log lines and trace carry, on a result and on an error alike. Servers send it in
the trailing metadata of every call, and in the initial metadata of a stream as well, so a
stream's caller has it before the first message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REQUEST_ID_KEY = "x-request-id"
Metadata = Iterable[tuple[str, Any]] | None


def request_id_in(*metadata: Metadata) -> str:
    """The first x-request-id value in `metadata` (a call's initial metadata, then its
    trailing metadata), or "" when none has one."""
    for entries in metadata:
        for key, value in entries or ():
            if key == REQUEST_ID_KEY:
                return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""
