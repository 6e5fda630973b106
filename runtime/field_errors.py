"""The refusal of one request field: INVALID_ARGUMENT, reason INVALID_PARAMETER, a message that
starts with the field's name, and the field in the ErrorInfo metadata (with whatever else a
refusal names, such as the limit it broke)."""

from __future__ import annotations

from servemesh.errors import InvalidArgument


def invalid_field(field: str, problem: str, **metadata: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} {problem}", reason="INVALID_PARAMETER", metadata={"field": field, **metadata}
    )
