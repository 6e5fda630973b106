"""TorchServe's key_file.json: the tokens its inference and management APIs want."""

from __future__ import annotations

import json
import os

from servemesh.errors import Unavailable


class KeyFile:
    """TorchServe's key_file.json, read again whenever TorchServe rewrites it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: float | None = None
        self._keys: dict[str, str] = {}

    def metadata(self, api: str) -> tuple[tuple[str, str], ...]:
        """The authorization header for TorchServe's `inference` or `management` API."""
        if not self.path:
            return ()
        try:
            stamp = os.stat(self.path).st_mtime
            if stamp != self._stamp:
                with open(self.path) as f:
                    self._keys = {k: v["key"] for k, v in json.load(f).items()}
                self._stamp = stamp
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise Unavailable(
                f"cannot read TorchServe's key file {self.path}: {error}; is TorchServe running?",
                reason="BACKEND_KEY_MISSING",
            ) from None
        return (("authorization", f"Bearer {self._keys.get(api, '')}"),)
