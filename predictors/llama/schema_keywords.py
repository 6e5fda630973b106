"""The JSON Schema keywords as llama-cpp-python's converter sees them: which it reads, which
it skips (and so are refused, each with what to do instead), and which only annotate."""

from __future__ import annotations

ANNOTATIONS = frozenset(
    {"title", "description", "$comment", "examples", "default", "deprecated", "readOnly"}
    | {"writeOnly", "$schema"}
)
OBJECT_KEYS = frozenset({"properties", "required", "additionalProperties"})
ARRAY_KEYS = frozenset({"items", "prefixItems", "minItems", "maxItems"})
STRING_KEYS = frozenset({"pattern", "format", "minLength", "maxLength"})
# What an annotation's value must be, so a schema that a validator would reject as malformed is
# refused here too rather than read as if it were fine.
ANNOTATION_TYPES: dict[str, type | tuple[type, ...]] = {
    "title": str,
    "description": str,
    "$comment": str,
    "$schema": str,
    "examples": list,
    "deprecated": bool,
    "readOnly": bool,
    "writeOnly": bool,
}
KIND_KEYS = {"object": OBJECT_KEYS, "array": ARRAY_KEYS, "string": STRING_KEYS}
STRUCTURE = frozenset({"$ref", "$defs", "definitions", "anyOf", "type", "const", "enum"})
# Keywords the converter reads nowhere: refused with what to do instead.
UNSUPPORTED = {
    "oneOf": "use anyOf: the grammar cannot make alternatives exclusive",
    "allOf": "merge the schemas into one",
    "not": "negation cannot be enforced",
    "if": "conditions cannot be enforced",
    "then": "conditions cannot be enforced",
    "else": "conditions cannot be enforced",
    "minimum": "number ranges are not enforced",
    "maximum": "number ranges are not enforced",
    "exclusiveMinimum": "number ranges are not enforced",
    "exclusiveMaximum": "number ranges are not enforced",
    "multipleOf": "multiples are not enforced",
    "minProperties": "property counts are not enforced; list the properties and require them",
    "maxProperties": "property counts are not enforced; list the properties",
    "patternProperties": "property names are not constrained by patterns",
    "propertyNames": "property names are not constrained",
    "dependentRequired": "dependencies between properties are not enforced",
    "dependentSchemas": "dependencies between properties are not enforced",
    "dependencies": "dependencies between properties are not enforced",
    "unevaluatedProperties": "use additionalProperties",
    "unevaluatedItems": "use items",
    "additionalItems": "use items or prefixItems",
    "contains": "array contents are constrained only by items",
    "minContains": "array contents are constrained only by items",
    "maxContains": "array contents are constrained only by items",
    "uniqueItems": "unique items are not enforced",
    "contentEncoding": "string encodings are not enforced",
    "contentMediaType": "string media types are not enforced",
    "contentSchema": "string contents are not enforced",
    "$id": "base URIs are not supported; use $ref to #/$defs/NAME",
    "$anchor": "anchors are not supported; use $ref to #/$defs/NAME",
    "$dynamicRef": "dynamic references are not supported",
    "$dynamicAnchor": "dynamic references are not supported",
    "$recursiveRef": "use $ref to #/$defs/NAME",
    "$recursiveAnchor": "use $ref to #/$defs/NAME",
    "$vocabulary": "vocabularies are not supported",
}
KNOWN = ANNOTATIONS | OBJECT_KEYS | ARRAY_KEYS | STRING_KEYS | STRUCTURE | frozenset(UNSUPPORTED)
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
FORMATS = ("date", "time", "date-time", "uuid")
# The first character each JSON type can start with: alternatives that share one are both
# alive in the grammar while they read the same text.
LEADS = {"object": "{", "array": "[", "string": '"', "number": "0", "integer": "0"}
LEADS |= {"boolean": "tf", "null": "n"}
