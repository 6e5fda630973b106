"""response_format without a server: reading it (runtime/response_format.py), the schema check
and its rewrite (predictors/llama/json_schema.py, json_pattern.py), the grammar it makes and
llama.cpp's parse of it (predictors/llama/grammar.py), and TorchServe's refusal."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.backends.torchserve.codec import torchserve_input
from gateway.backends.torchserve.options import Task, TorchServeModel
from predictors.llama import json_pattern
from predictors.llama.grammar import compiles, json_grammar, schema_grammar
from predictors.llama.json_schema import SchemaLimits, check_schema
from runtime.response_format import SCHEMA_FIELD, JsonFormat, parse_response_format
from runtime.textgen import GenerationLimits, parse_generation
from servemesh.errors import InvalidArgument
from servemesh.v1 import generation_pb2 as gen
from servemesh.v1 import prediction_service_pb2 as pb

FIELD = "text_generation.parameters.response_format"


def schema_format(schema: Any, name: str = "") -> gen.ResponseFormat:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return gen.ResponseFormat(json_schema=gen.ResponseFormatJsonSchema(name=name, schema=text))


def refusal(schema: Any, limits: SchemaLimits | None = None) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        json_grammar(JsonFormat(schema), limits=limits)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return caught.value


# --- reading response_format ---


@pytest.mark.parametrize(
    "fmt", [gen.ResponseFormat(), gen.ResponseFormat(text=gen.ResponseFormatText())]
)
def test_unset_or_text_is_free_text(fmt: gen.ResponseFormat) -> None:
    assert parse_response_format(fmt) is None


def test_json_object_is_any_object() -> None:
    fmt = gen.ResponseFormat(json_object=gen.ResponseFormatJsonObject())
    assert parse_response_format(fmt) == JsonFormat(schema=None)


def test_a_schema_is_read_in_the_order_of_its_text() -> None:
    text = '{"type": "object", "properties": {"b": {}, "a": {}}}'
    fmt = parse_response_format(schema_format(text, name="my_schema-1"))
    assert fmt == JsonFormat({"type": "object", "properties": {"b": {}, "a": {}}}, "my_schema-1")
    assert list(fmt.schema["properties"]) == ["b", "a"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty; give the JSON Schema as JSON text"),
        ("{bad", "is not valid JSON: Expecting property name enclosed in double quotes (line 1"),
        ("[1, 2]", "must be a JSON object (a JSON Schema), not list"),
        ("true", "must be a JSON object (a JSON Schema), not bool"),
        ('{"const": NaN}', "is not valid JSON: NaN is not JSON"),
        ('{"type": "string", "type": "integer"}', 'is not valid JSON: the key "type" appears'),
        ("[" * 100_000, "nests too deep to read"),
    ],
)
def test_a_schema_that_is_not_a_json_object_is_invalid(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_response_format(schema_format(text), max_schema_bytes=1_000_000)
    assert caught.value.message.startswith(f"{SCHEMA_FIELD} {problem}")
    assert caught.value.reason == "INVALID_PARAMETER"
    assert caught.value.metadata == {"field": SCHEMA_FIELD}


def test_the_schema_size_is_bounded_and_the_refusal_names_the_limit() -> None:
    text = json.dumps({"description": "x" * 90})
    assert len(text) == 109
    parse_response_format(schema_format(text), max_schema_bytes=109)
    with pytest.raises(InvalidArgument) as caught:
        parse_response_format(schema_format(text), max_schema_bytes=108)
    assert caught.value.message == (
        f"{SCHEMA_FIELD} has 109 bytes; at most 108 (--max-schema-bytes)"
    )
    assert caught.value.metadata == {
        "field": SCHEMA_FIELD,
        "limit": "--max-schema-bytes",
        "max": "108",
        "actual": "109",
    }


@pytest.mark.parametrize("name", ["has space", "x" * 65, "naïve"])
def test_a_name_follows_openais_rule(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_response_format(schema_format({}, name=name))
    assert caught.value.metadata == {"field": FIELD + ".json_schema.name"}


def test_parse_generation_carries_the_format() -> None:
    text = gen.TextGenerationInput(
        prompt="p",
        parameters=gen.GenerationParameters(
            response_format=gen.ResponseFormat(json_object=gen.ResponseFormatJsonObject())
        ),
    )
    limits = GenerationLimits(context_length=100, max_tokens=50, default_max_tokens=16)
    assert parse_generation(text, limits).response_format == JsonFormat()
    text.parameters.ClearField("response_format")
    assert parse_generation(text, limits).response_format is None


# --- what the grammar enforces ---

SUPPORTED = {
    "required fields": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20, "description": "annotations pass"},
            "age": {"type": "integer"},
            "color": {"enum": ["red", "green", "blue"]},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
        },
        "required": ["name", "age", "color"],
        "additionalProperties": False,
    },
    "array of objects": {
        "type": "array",
        "items": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "minItems": 1,
        "maxItems": 3,
    },
    "nullable": {"type": ["string", "null"], "maxLength": 4},
    "anyOf": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
    "const and formats": {
        "type": "object",
        "properties": {
            "kind": {"const": "event"},
            "on": {"type": "string", "format": "date"},
            "at": {"format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
        },
    },
    "tuple": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
    "pydantic style": {
        "$defs": {
            "Address": {
                "title": "Address",
                "type": "object",
                "properties": {"city": {"title": "City", "type": "string"}},
                "required": ["city"],
            }
        },
        "title": "Person",
        "type": "object",
        "properties": {"home": {"$ref": "#/$defs/Address"}},
        "required": ["home"],
    },
    "recursive tree": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "maxLength": 8},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
                },
                "required": ["label", "kids"],
            }
        },
        "$ref": "#/$defs/node",
    },
    "any object": {},
    "free additional properties": {"type": "object", "additionalProperties": {"type": "integer"}},
    "pattern": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}(?:x|y)?.$"},
    "old definitions": {
        "definitions": {"n": {"type": "integer"}},
        "type": "array",
        "items": {"$ref": "#/definitions/n"},
    },
    "vendor extension": {"type": "integer", "x-unit": "cm"},
}


@pytest.mark.parametrize("schema", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_supported_schemas_make_grammars_llama_cpp_accepts(schema: dict[str, Any]) -> None:
    grammar = json_grammar(JsonFormat(schema))
    assert compiles(grammar)
    assert grammar.startswith("root ::= ") or "\nroot ::= " in grammar


def test_json_object_mode_uses_llama_cpp_pythons_json_grammar() -> None:
    grammar = json_grammar(JsonFormat())
    assert compiles(grammar)
    assert re.search(r"^root\s+::= object", grammar, re.M)


def test_strings_cannot_hold_raw_control_characters() -> None:
    """The converter's own character rule, [^"\\], lets a raw newline into a string."""
    grammar = schema_grammar({"type": "string"}, SchemaLimits())
    (char,) = [line for line in grammar.splitlines() if line.startswith("char ::=")]
    assert r"\x00-\x1F" in char and r"\x7F" in char


def test_enum_strings_are_written_as_json() -> None:
    """The converter escapes no backslash in a literal: "a\\b" came out as "a\b" (a
    backspace), and a tab as a raw tab."""
    values = ["a\\b", 'q"', "tab\t", "é", 1, None]
    grammar = schema_grammar({"enum": values}, SchemaLimits())
    (root,) = [line for line in grammar.splitlines() if line.startswith("root ::=")]
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', root.removeprefix("root ::= "))
    unescaped = [re.sub(r"\\(.)", r"\1", lit) for lit in literals]
    assert [json.loads(u) for u in unescaped] == values


def test_references_and_properties_with_alike_names_keep_their_own_rules() -> None:
    """The converter names a $ref's rule after its last segment and reuses any rule of that
    name, and adds a built-in rule only when no rule has its name: a property "item" would
    have stood in for the definition "item", and a property "part" of "integral" for the
    digits of every integer."""
    schema = {
        "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "type": "object",
        "properties": {
            "item": {"type": "string", "maxLength": 3},
            "other": {"$ref": "#/$defs/item"},
            "integral": {"type": "object", "properties": {"part": {"type": "object"}}},
            "n": {"type": "integer"},
        },
    }
    grammar = schema_grammar(schema, SchemaLimits())
    rules = dict(line.split(" ::= ", 1) for line in grammar.split("\n"))
    assert rules["other"] == "ref-item"
    assert rules["ref-item"] == '"{" space  (ref-item-n-kv )? "}" space'
    assert rules["item"].startswith('"\\"" (char')
    assert rules["integer"] == '("-"? integral-part) space'
    assert rules["integral-part"].startswith("[0-9] | [1-9]")
    assert rules["integral-part-kv"] == '"\\"part\\"" space ":" space integral-part-'
    assert compiles(grammar)


def test_the_converter_gets_a_list_of_types_as_alternatives_without_annotations() -> None:
    """The converter reads a list of types alone and would drop maxLength."""
    schema = {"type": ["string", "null"], "maxLength": 3, "title": "t", "x-note": 1}
    assert check_schema(schema) == {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]}


def test_unused_builtin_rules_are_left_out() -> None:
    grammar = schema_grammar({"type": "boolean"}, SchemaLimits())
    assert grammar == 'root ::= ("true" | "false") space\nspace ::= " "?'


# --- what is refused ---

UNSUPPORTED = [
    ({"type": "integer", "minimum": 0}, "minimum", "/"),
    (
        {"type": "object", "properties": {"n": {"type": "number", "maximum": 3}}},
        "maximum",
        "/properties/n",
    ),
    ({"oneOf": [{"type": "string"}]}, "oneOf", "/"),
    ({"allOf": [{"type": "string"}]}, "allOf", "/"),
    ({"not": {"type": "string"}}, "not", "/"),
    ({"type": "string", "format": "email"}, "format", "/"),
    ({"type": "string", "pattern": "^a$", "maxLength": 3}, "maxLength", "/"),
    ({"type": "string", "format": "date", "minLength": 3}, "minLength", "/"),
    ({"type": "array", "items": {}, "uniqueItems": True}, "uniqueItems", "/"),
    ({"type": "array", "maxItems": 3}, "maxItems", "/"),
    ({"type": "array", "items": [{"type": "string"}]}, "items", "/"),
    ({"type": "array", "prefixItems": [{}], "items": {}}, "items", "/"),
    ({"type": "object", "minProperties": 1}, "minProperties", "/"),
    ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties", "/"),
    ({"type": "object", "properties": {}, "required": ["a"]}, "required", "/"),
    ({"$ref": "https://example.com/schema.json"}, "$ref", "/"),
    ({"$ref": "other.json#/$defs/a"}, "$ref", "/"),
    ({"$ref": "#/properties/a"}, "$ref", "/"),
    ({"$ref": "#/$defs/a", "type": "object", "$defs": {"a": {}}}, "type", "/"),
    ({"anyOf": [{"type": "string"}], "maxLength": 3}, "maxLength", "/"),
    ({"properties": {"a": {}}, "items": {}}, "type", "/"),
    ({"enum": ["a", "b"], "maxLength": 1}, "maxLength", "/"),
    ({"type": "object", "properties": {"a": {"nullable": True}}}, "nullable", "/properties/a"),
    ({"type": "object", "properties": {"a": True}}, "true", "/properties/a"),
    ({"type": "object", "properties": {"": {}}}, "", "/properties"),
    ({"$id": "https://example.com/s"}, "$id", "/"),
    ({"type": "object", "properties": {"a": {"$defs": {}}}}, "$defs", "/properties/a"),
    ({"type": "string", "contentEncoding": "base64"}, "contentEncoding", "/"),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired", "/"),
    ({"if": {}, "then": {}}, "if", "/"),
]


@pytest.mark.parametrize(("schema", "keyword", "path"), UNSUPPORTED)
def test_what_the_converter_would_ignore_is_refused_by_name(
    schema: dict[str, Any], keyword: str, path: str
) -> None:
    error = refusal(schema)
    assert error.reason == "UNSUPPORTED_SCHEMA_FEATURE"
    assert error.metadata == {"field": SCHEMA_FIELD, "keyword": keyword, "path": path}
    assert error.message.startswith(f"{SCHEMA_FIELD}: {keyword!r} at {path} is not supported: ")


UNSUPPORTED_PATTERNS = [
    ("^[a-z]+", "pattern"),  # not anchored: JSON Schema patterns search
    ("[a-z]+$", "pattern"),
    ("^a|b$", "|"),
    ("^(?=a)a$", "(?"),
    ("^(?P<x>a)$", "(?"),
    ("^a*?$", "?"),
    ("^a{2}+$", "+"),
    ('^a"$', "'\"'"),
    ("^a\\\\b$", "\\\\"),
    ("^\\D$", "\\D"),
    ("^[^\\d]$", "[^\\d]"),
    ("^\\bword$", "\\b"),
    ("^(a)\\1$", "\\1"),
    ("^a{1001}$", "{1001}"),
    ('^["]$', '["]'),
    ("^[[:alpha:]]$", "["),
    ("^a^b$", "^"),
]


@pytest.mark.parametrize(("pattern", "feature"), UNSUPPORTED_PATTERNS)
def test_patterns_the_grammar_would_get_wrong_are_refused(pattern: str, feature: str) -> None:
    error = refusal({"type": "string", "pattern": pattern})
    assert error.reason == "UNSUPPORTED_SCHEMA_FEATURE"
    assert error.metadata["keyword"] == feature
    assert error.metadata["path"] == "/pattern"


def test_an_invalid_regular_expression_is_refused() -> None:
    error = refusal({"type": "string", "pattern": "^(a$"})
    assert "is not a valid regular expression" in error.message


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "strin"}, "has type 'strin'; the types are object, array, string, number"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "has minLength 5 above maxLength 2"),
        ({"type": "string", "maxLength": -1}, "must be a non-negative integer"),
        ({"enum": []}, "must be a non-empty list"),
        ({"anyOf": []}, "must be a non-empty list of schemas"),
        ({"type": "integer", "enum": [1, "a"]}, "holds 'a', which is not integer"),
        ({"type": "object", "properties": []}, "must be an object of schemas"),
        ({"$ref": "#/$defs/missing", "$defs": {"a": {}}}, "refers to '#/$defs/missing'"),
        ({"type": ["string", "string"]}, "must list distinct types"),
    ],
)
def test_a_malformed_schema_is_an_invalid_parameter(schema: dict[str, Any], problem: str) -> None:
    error = refusal(schema)
    assert error.reason == "INVALID_PARAMETER"
    assert problem in error.message
    assert error.metadata["field"] == SCHEMA_FIELD


# --- limits ---


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def test_nesting_is_bounded() -> None:
    json_grammar(JsonFormat(nested(16)))
    error = refusal(nested(17))
    assert error.message.endswith("nests deeper than 16 levels")
    assert error.metadata["limit"] == "max_depth"
    assert error.metadata["path"] == "..." + ("/properties/a" * 17)[-64:]


def test_repetition_counts_are_bounded_before_the_grammar_is_built() -> None:
    """maxLength 10**9 would make the converter write a gigabyte of grammar."""
    error = refusal({"type": "string", "maxLength": 10**9})
    assert error.message.endswith("/maxLength is 1000000000; at most 1000")


def test_the_grammar_size_is_bounded_and_the_refusal_names_the_limit() -> None:
    schema = {"type": "string", "maxLength": 1000}
    size = len(schema_grammar(schema, SchemaLimits()).encode())
    json_grammar(JsonFormat(schema), max_grammar_bytes=size)
    with pytest.raises(InvalidArgument) as caught:
        json_grammar(JsonFormat(schema), max_grammar_bytes=size - 1)
    assert caught.value.message.startswith(
        f"{SCHEMA_FIELD} makes a grammar of {size} bytes; at most {size - 1} (--max-grammar-bytes)"
    )
    assert caught.value.metadata == {
        "field": SCHEMA_FIELD,
        "limit": "--max-grammar-bytes",
        "max": str(size - 1),
        "actual": str(size),
    }


def test_enums_are_bounded() -> None:
    json_grammar(JsonFormat({"enum": list(range(256))}))
    assert "has 257 values; at most 256" in refusal({"enum": list(range(257))}).message


def test_alternatives_that_read_the_same_text_are_bounded_when_nested() -> None:
    """Each level of anyOf over one type keeps every branch alive in llama.cpp's grammar."""
    two_ways = {"anyOf": [{"type": "array", "items": {}}, {"type": "array", "items": {}}]}
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(7):  # 2**7 ways
        schema = {"anyOf": [{"type": "array", "items": schema}, {"type": "array", "items": schema}]}
    json_grammar(JsonFormat(two_ways))
    error = refusal(schema)
    assert "alternatives that read the same text 128 ways deep; at most 64" in error.message
    disjoint = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "object"}]}
    for _ in range(6):
        disjoint = {"anyOf": [{"type": "array", "items": disjoint}, {"type": "null"}]}
    json_grammar(JsonFormat(disjoint))


def test_recursion_through_ambiguous_alternatives_is_refused() -> None:
    schema = {
        "$defs": {
            "t": {
                "anyOf": [
                    {"type": "array", "items": {"$ref": "#/$defs/t"}},
                    {"type": "array", "items": {"type": "string"}},
                ]
            }
        },
        "$ref": "#/$defs/t",
    }
    error = refusal(schema)
    assert error.metadata["keyword"] == "$ref"
    assert "recursive reference through alternatives" in error.message
    tree = {
        "$defs": {
            "v": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/$defs/v"}}]}
        },
        "$ref": "#/$defs/v",
    }
    json_grammar(JsonFormat(tree))


# --- patterns ---


@pytest.mark.parametrize(
    ("pattern", "rewritten"),
    [
        ("^[a-z]+$", "^[\\x61-\\x7A]+$"),
        ("^\\d{3}-\\w$", "^[\\x30-\\x39]{3}-[\\x30-\\x39\\x41-\\x5A\\x5F\\x61-\\x7A]$"),
        ("^a.b$", "^a[^\\x00-\\x1F\\x22\\x5C\\x7F]b$"),
        ("^[^x]$", "^[^\\x78\\x00-\\x1F\\x22\\x5C\\x7F]$"),
        ("^[ -~]$", "^[\\x20-\\x21\\x23-\\x5B\\x5D-\\x7E]$"),
        ("^(?:ab|c)\\.d$", "^(ab|c)[\\x2E]d$"),
        ("^x{,2}y{3,}$", "^x{0,2}y{3,}$"),
        ("^a{b$", "^a[\\x7B]b$"),
    ],
)
def test_patterns_are_rewritten_for_the_converter(pattern: str, rewritten: str) -> None:
    assert json_pattern.rewrite(pattern, 1000) == rewritten


PATTERNS = ["^[a-z]+$", "^\\d{2,4}[.-]?x$", "^(?:ab|c)*\\.$", "^.{0,3}$", "^[^a-c]+z$", "^[ -~]*$"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATTERNS), st.text(max_size=6))
def test_what_a_rewritten_pattern_matches_the_original_matches_too(pattern: str, text: str) -> None:
    rewritten = json_pattern.rewrite(pattern, 1000)
    if re.fullmatch(rewritten[1:-1], text):
        assert re.search(pattern, text)
        assert not re.search(r'["\\\x00-\x1f\x7f]', text), "JSON would have to escape it"


# --- TorchServe ---

TEXT_MODEL = TorchServeModel(task=Task.TEXT_GENERATION, context_length=1024, max_tokens=300)


@pytest.mark.parametrize("request_type", [pb.PredictRequest, pb.PredictStreamRequest])
def test_torchserve_refuses_a_format_its_handler_cannot_enforce(request_type: type) -> None:
    request = request_type(model="smollm2-135m-torch")
    request.text_generation.prompt = "p"
    request.text_generation.parameters.response_format.json_object.SetInParent()
    with pytest.raises(InvalidArgument) as caught:
        torchserve_input(request, TEXT_MODEL, stream=False)
    assert caught.value.reason == "UNSUPPORTED_PARAMETER"
    assert caught.value.metadata == {"field": FIELD, "model": "smollm2-135m-torch"}
    assert caught.value.message.startswith(
        "model 'smollm2-135m-torch' does not support response_format (json_object): "
    )
    request.text_generation.parameters.response_format.text.SetInParent()
    assert torchserve_input(request, TEXT_MODEL, stream=False)  # free text goes through
