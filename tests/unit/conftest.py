"""The fast tier: pure logic in milliseconds, no server and no subprocess (`make unit`).

tests/conftest.py's session fixtures start the whole mesh for whichever test asks for them.
Here they are overridden to fail at once, so a unit test that asks for a server says so
instead of quietly starting one and turning the tier slow.
"""

from __future__ import annotations

import pytest


def _no_servers(name: str) -> None:
    pytest.fail(
        f"tests/unit starts no servers, but this test asks for the {name!r} fixture; "
        "move it to tests/ with the tests that run against real servers",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def mesh() -> None:
    _no_servers("mesh")


@pytest.fixture(scope="session")
def client() -> None:
    _no_servers("client")
