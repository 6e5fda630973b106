"""Reads a request's response_format: free text, any JSON object, or JSON valid against a JSON
Schema. Checks what any server can check without its model: the kind, the schema's size, that
it is JSON and that its root is an object. Which schema keywords can be enforced is the
enforcing server's business (the llama predictor's is predictors/llama/json_schema.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from runtime.field_errors import invalid_field
from runtime.quoting import cut, shown
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2

FIELD = "text_generation.parameters.response_format"
SCHEMA_FIELD = FIELD + ".json_schema.schema"
NAME_FIELD = FIELD + ".json_schema.name"
DEFAULT_MAX_SCHEMA_BYTES = 64 * 1024
# OpenAI's rule for json_schema.name, so a name that works there works here.
NAME = re.compile(r"[A-Za-z0-9_-]{0,64}")


@dataclass(frozen=True)
class JsonFormat:
    """The output must be JSON: one object when `schema` is None, else valid against `schema`
    (already parsed, in the order its text gave its keys)."""

    schema: dict[str, Any] | None = None
    name: str = ""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON allows a key twice and parsers keep either copy; a schema that says two things
    # about one key is refused rather than read one way here and another way by the caller.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {json.dumps(key)} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; JSON has none


def load_schema(text: str, max_bytes: int, limit_name: str) -> dict[str, Any]:
    """The schema's JSON text as a dict; InvalidArgument when it is too big (naming
    `limit_name`), not JSON, or not an object."""
    size = len(text.encode())
    if size > max_bytes:
        raise invalid_field(
            SCHEMA_FIELD,
            f"has {size} bytes; at most {max_bytes} ({limit_name})",
            limit=limit_name,
            max=str(max_bytes),
            actual=str(size),
        )
    if not text.strip():
        raise invalid_field(SCHEMA_FIELD, "is empty; give the JSON Schema as JSON text")
    try:
        schema = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise invalid_field(
            SCHEMA_FIELD,
            f"is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
        ) from None
    except ValueError as error:
        raise invalid_field(SCHEMA_FIELD, f"is not valid JSON: {error}") from None
    except RecursionError:
        raise invalid_field(SCHEMA_FIELD, "nests too deep to read") from None
    if not isinstance(schema, dict):
        raise invalid_field(
            SCHEMA_FIELD, f"must be a JSON object (a JSON Schema), not {type(schema).__name__}"
        )
    return schema


def parse_response_format(
    fmt: generation_pb2.ResponseFormat, max_schema_bytes: int = DEFAULT_MAX_SCHEMA_BYTES
) -> JsonFormat | None:
    """The checked form of `fmt`; None for free text (unset, or `text`)."""
    kind = fmt.WhichOneof("kind")
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        return JsonFormat()
    spec = fmt.json_schema
    if not NAME.fullmatch(spec.name):
        raise invalid_field(
            NAME_FIELD, "must have at most 64 letters, digits, '_' or '-' (as OpenAI requires)"
        )
    schema = load_schema(spec.schema, max_schema_bytes, "--max-schema-bytes")
    return JsonFormat(schema, spec.name)


def refuse_response_format(
    fmt: generation_pb2.ResponseFormat, model: str, why: str
) -> InvalidArgument | None:
    """For a server that cannot enforce any response_format: the error for a request that asks
    for one (JSON), or None when it asks for free text."""
    kind = fmt.WhichOneof("kind")
    if kind is None or kind == "text":
        return None
    return InvalidArgument(
        f"model {shown(model)} does not support response_format ({kind}): {why}; leave "
        "response_format unset, or use a model that supports it",
        reason="UNSUPPORTED_PARAMETER",
        metadata={"field": FIELD, "model": cut(model)},
    )
