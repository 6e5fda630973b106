"""Helpers to build settings from flags whose defaults come from environment variables."""

from __future__ import annotations

import logging
import os


def env(name: str, default: str) -> str:
    """The value of environment variable `name`, or `default`."""
    return os.environ.get(name, default)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
