"""Checks a JSON Schema against what llama-cpp-python's converter enforces, and writes it in the
form the converter reads. A keyword that the converter would skip is refused, naming it and
where it is, so no caller trusts a constraint that was never applied.

The converter's own rules decide what is supported (llama_cpp/llama_grammar.py,
SchemaConverter.visit): one branch per schema, picked by the first of $ref, anyOf, a list of
types, const, enum, an object, an array, a string pattern or format or length, a plain type.
Keywords another branch would read are refused beside it. Where the converter is stricter than
the schema (no unlisted properties, `{}` meaning any object), the output still validates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from predictors.llama import json_pattern
from predictors.llama.schema_keywords import (
    ANNOTATION_TYPES,
    ANNOTATIONS,
    FORMATS,
    KIND_KEYS,
    KNOWN,
    LEADS,
    TYPES,
    UNSUPPORTED,
)
from runtime.quoting import cut
from runtime.response_format import SCHEMA_FIELD
from servemesh.errors import InvalidArgument


@dataclass(frozen=True)
class SchemaLimits:
    """How far a schema may go. Each bounds work in the grammar: nesting bounds the
    converter's recursion, repeats bound the grammar's size, and alternatives that can read
    the same text (anyOf branches of one type, named beside additional properties) multiply
    the states llama.cpp tracks for every token, per level of nesting."""

    max_depth: int = 16
    max_repeat: int = 1000  # minLength, maxLength, minItems, maxItems, {m,n} in patterns
    max_ambiguity: int = 64  # product of overlapping alternatives along one path
    max_enum: int = 256


_TYPE_NAMES = {str: "string", list: "list", bool: "boolean"}


def _pointer(path: str) -> str:
    """A JSON pointer as an error shows it: its last 64 characters, where it ends."""
    if not path:
        return "/"
    return path if len(path) <= 64 else "..." + path[-64:]


def unsupported(path: str, keyword: str, why: str) -> InvalidArgument:
    keyword = cut(keyword)
    return InvalidArgument(
        f"{SCHEMA_FIELD}: {keyword!r} at {_pointer(path)} is not supported: {why}",
        reason="UNSUPPORTED_SCHEMA_FEATURE",
        metadata={"field": SCHEMA_FIELD, "keyword": keyword, "path": _pointer(path)},
    )


def invalid(path: str, problem: str, **metadata: str) -> InvalidArgument:
    return InvalidArgument(
        f"{SCHEMA_FIELD} at {_pointer(path)} {problem}",
        reason="INVALID_PARAMETER",
        metadata={"field": SCHEMA_FIELD, "path": _pointer(path), **metadata},
    )


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _json_types(value: Any) -> set[str]:
    """The JSON Schema types a JSON value has (an integral number is also an integer)."""
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return {"number", "integer"}
    if isinstance(value, float):
        return {"number"}
    if isinstance(value, str):
        return {"string"}
    return {"array"} if isinstance(value, list) else {"object"}


class _Checker:
    """One walk over a schema. `_node` returns the converter's copy of each subschema."""

    def __init__(self, root: dict[str, Any], limits: SchemaLimits) -> None:
        self.limits = limits
        self.defs: dict[str, dict[str, Any]] = {}  # "$defs" / "definitions" -> name -> schema
        for key in ("$defs", "definitions"):
            if key in root:
                table = root[key]
                if not isinstance(table, dict):
                    raise invalid(f"/{key}", "must be an object of schemas")
                self.defs[key] = table
        self.clean_defs: dict[str, dict[str, Any]] = {key: {} for key in self.defs}
        self._entered: dict[str, int] = {}  # refs being walked -> ambiguity on entry
        self._walked: dict[str, tuple[int, int]] = {}  # ref -> (depth, ambiguity) walked at

    def root(self, schema: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in schema.items() if k not in self.defs}
        clean = self._node(body, "", 0, 1)
        for table, definitions in self.defs.items():  # unused ones are checked all the same
            for name, definition in definitions.items():
                ref = f"#/{table}/{name}"
                if ref not in self._walked:
                    self._node(definition, f"/{table}/{_escape(name)}", 0, 1)
        if "$ref" in clean:
            # The converter resolves no reference inside $defs when the root is a $ref: as
            # the one alternative of an anyOf, it is an ordinary node.
            clean = {"anyOf": [clean]}
        # $ref pointers name the root's tables, so the walked definitions go back there.
        return clean | {key: table for key, table in self.clean_defs.items() if table}

    def _node(self, schema: Any, path: str, depth: int, ambiguity: int) -> dict[str, Any]:
        if isinstance(schema, bool):
            raise unsupported(path, str(schema).lower(), "boolean schemas; write {} or omit")
        if not isinstance(schema, dict):
            raise invalid(path, f"must be a schema (a JSON object), not {type(schema).__name__}")
        if depth > self.limits.max_depth:
            limit = str(self.limits.max_depth)
            raise invalid(path, f"nests deeper than {limit} levels", limit="max_depth", max=limit)
        self._keywords(schema, path)
        if "$ref" in schema:
            return self._ref(schema, path, depth, ambiguity)
        if "anyOf" in schema:
            return self._any_of(schema, path, depth, ambiguity)
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._type_list(schema, kind, path, depth, ambiguity)
        if kind is not None and kind not in TYPES:
            raise invalid(path, f"has type {cut(str(kind))!r}; the types are {', '.join(TYPES)}")
        if "const" in schema or "enum" in schema:
            return self._values(schema, {kind} if kind else set(TYPES), path)
        kind = kind or self._implied_type(schema, path)
        if kind == "object":
            return self._object(schema, path, depth, ambiguity)
        if kind == "array":
            return self._array(schema, path, depth, ambiguity)
        if kind == "string":
            return self._string(schema, path)
        return {"type": kind} if kind else {}

    def _keywords(self, schema: dict[str, Any], path: str) -> None:
        for key, value in schema.items():
            if key.startswith("x-"):
                continue  # vendor extensions: annotations by convention
            if key not in KNOWN:
                raise unsupported(path, key, "not a JSON Schema keyword this server knows")
            if key in UNSUPPORTED and not (key == "uniqueItems" and value is False):
                raise unsupported(path, key, UNSUPPORTED[key])
            if key in ("$defs", "definitions") and path:
                raise unsupported(path, key, "$defs must be at the root of the schema")
            if value is None and key not in ("const", "default"):
                raise invalid(f"{path}/{key}", "must not be null")
            kind = ANNOTATION_TYPES.get(key)
            if kind is not None and not isinstance(value, kind):
                raise invalid(f"{path}/{key}", f"must be a {_TYPE_NAMES[kind]}")

    def _only(self, schema: dict[str, Any], allowed: set[str], path: str, beside: str) -> None:
        """Refuses the keywords of `schema` that the converter ignores in this branch."""
        for key in schema:
            if key not in allowed and key not in ANNOTATIONS and not key.startswith("x-"):
                raise unsupported(path, key, f"beside {beside}, which the grammar follows alone")

    def _ref(self, schema: dict[str, Any], path: str, depth: int, ambiguity: int) -> dict[str, Any]:
        self._only(schema, {"$ref"}, path, "$ref")
        ref = schema["$ref"]
        parts = ref.split("/") if isinstance(ref, str) else []
        if len(parts) != 3 or parts[0] != "#" or parts[1] not in self.defs:
            raise unsupported(
                path,
                "$ref",
                f"{cut(str(ref))!r}: only #/$defs/NAME (or #/definitions/NAME) "
                "in this schema can be referred to; no remote or other references",
            )
        table, name = parts[1], parts[2]
        if "~" in name or "%" in name or name not in self.defs[table]:
            raise invalid(path, f"refers to {cut(ref)!r}, which the schema does not define")
        if ref in self._entered:
            if ambiguity > self._entered[ref]:
                raise unsupported(
                    path,
                    "$ref",
                    "a recursive reference through alternatives that read the "
                    "same text (anyOf branches of one type): the grammar's work would double "
                    "with each level",
                )
            return {"$ref": ref}
        depth_seen, ambiguity_seen = self._walked.get(ref, (-1, 0))
        if depth > depth_seen or ambiguity > ambiguity_seen:
            self._walked[ref] = (max(depth, depth_seen), max(ambiguity, ambiguity_seen))
            self._entered[ref] = ambiguity
            clean = self._node(
                self.defs[table][name], f"/{table}/{_escape(name)}", depth, ambiguity
            )
            del self._entered[ref]
            self.clean_defs[table][name] = clean
        return {"$ref": ref}

    def _union(
        self, alternatives: list[Any], paths: list[str], depth: int, ambiguity: int
    ) -> dict[str, Any]:
        leads: dict[str, int] = {}
        for alternative in alternatives:
            for lead in self._leads(alternative, set()):
                leads[lead] = leads.get(lead, 0) + 1
        ambiguity *= max(leads.values(), default=1)
        if ambiguity > self.limits.max_ambiguity:
            limit = str(self.limits.max_ambiguity)
            raise invalid(
                paths[0],
                f"nests alternatives that read the same text {ambiguity} ways deep; at most "
                f"{limit}: give alternatives different types, or nest fewer of them",
                limit="max_ambiguity",
                max=limit,
            )
        return {
            "anyOf": [
                self._node(a, p, depth + 1, ambiguity)
                for a, p in zip(alternatives, paths, strict=True)
            ]
        }

    def _any_of(
        self, schema: dict[str, Any], path: str, depth: int, ambiguity: int
    ) -> dict[str, Any]:
        self._only(schema, {"anyOf"}, path, "anyOf")
        alternatives = schema["anyOf"]
        if not isinstance(alternatives, list) or not alternatives:
            raise invalid(path + "/anyOf", "must be a non-empty list of schemas")
        paths = [f"{path}/anyOf/{i}" for i in range(len(alternatives))]
        return self._union(alternatives, paths, depth, ambiguity)

    def _type_list(
        self, schema: dict[str, Any], kinds: list[Any], path: str, depth: int, ambiguity: int
    ) -> dict[str, Any]:
        named = [k for k in kinds if isinstance(k, str) and k in TYPES]
        if not kinds or len(set(named)) != len(kinds):
            raise invalid(path + "/type", f"must list distinct types among {', '.join(TYPES)}")
        if len(kinds) == 1:
            return self._node({**schema, "type": kinds[0]}, path, depth, ambiguity)
        if "const" in schema or "enum" in schema:
            return self._values(schema, set(kinds), path)
        # The converter reads a list of types alone and drops the other keywords, so the list
        # becomes one alternative per type, each with every keyword: the same schema, since
        # each keyword constrains only its own type.
        alternatives = [{**schema, "type": kind} for kind in kinds]
        return self._union(alternatives, [path] * len(kinds), depth - 1, ambiguity)

    def _values(self, schema: dict[str, Any], kinds: set[str], path: str) -> dict[str, Any]:
        key = "const" if "const" in schema else "enum"
        self._only(schema, {key, "type"}, path, key)
        values = [schema["const"]] if key == "const" else schema["enum"]
        if key == "enum" and (not isinstance(values, list) or not values):
            raise invalid(path + "/enum", "must be a non-empty list")
        if len(values) > self.limits.max_enum:
            limit = str(self.limits.max_enum)
            message = f"has {len(values)} values; at most {limit}"
            raise invalid(path + "/enum", message, limit="max_enum", max=limit)
        for value in values:
            if not kinds & _json_types(value):
                shown = " or ".join(sorted(kinds))
                raise invalid(path + "/" + key, f"holds {cut(repr(value))}, which is not {shown}")
        return {key: schema[key]}

    def _implied_type(self, schema: dict[str, Any], path: str) -> str | None:
        """Without a type the converter picks a branch by keyword; with keywords of two kinds
        it would follow one and drop the other."""
        groups = [kind for kind, keys in KIND_KEYS.items() if keys & schema.keys()]
        if len(groups) > 1:
            raise unsupported(
                path, "type", f"keywords of {' and '.join(groups)} without a type: give the type"
            )
        return groups[0] if groups else None

    def _count(self, schema: dict[str, Any], key: str, path: str) -> int | None:
        value = schema.get(key)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid(f"{path}/{key}", "must be a non-negative integer")
        if value > self.limits.max_repeat:
            limit = str(self.limits.max_repeat)
            raise invalid(
                f"{path}/{key}", f"is {value}; at most {limit}", limit="max_repeat", max=limit
            )
        return value

    def _bounds(self, schema: dict[str, Any], low: str, high: str, path: str) -> dict[str, int]:
        lo, hi = self._count(schema, low, path), self._count(schema, high, path)
        if lo is not None and hi is not None and lo > hi:
            raise invalid(path, f"has {low} {lo} above {high} {hi}: nothing can match")
        return {k: v for k, v in ((low, lo), (high, hi)) if v is not None}

    def _object(
        self, schema: dict[str, Any], path: str, depth: int, ambiguity: int
    ) -> dict[str, Any]:
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise invalid(path + "/properties", "must be an object of schemas")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise invalid(path + "/required", "must be a list of property names")
        for name in required:
            if name not in properties:
                raise unsupported(
                    path,
                    "required",
                    f"names {cut(name)!r}, which properties does not "
                    "define: the grammar writes only the properties it knows",
                )
        extra = schema.get("additionalProperties")
        if "" in properties:
            raise unsupported(path + "/properties", "", "an empty property name")
        if properties and extra not in (None, False):
            ambiguity *= 2  # a listed name also reads as an additional one
        clean: dict[str, Any] = {"type": "object"}
        if properties:
            clean["properties"] = {
                name: self._node(sub, f"{path}/properties/{_escape(name)}", depth + 1, ambiguity)
                for name, sub in properties.items()
            }
            clean["required"] = list(dict.fromkeys(required))
        if isinstance(extra, dict):
            clean["additionalProperties"] = self._node(
                extra, path + "/additionalProperties", depth + 1, ambiguity
            )
        elif isinstance(extra, bool):
            clean["additionalProperties"] = extra
        elif extra is not None:
            raise invalid(path + "/additionalProperties", "must be a schema or a boolean")
        return clean

    def _array(
        self, schema: dict[str, Any], path: str, depth: int, ambiguity: int
    ) -> dict[str, Any]:
        items, prefix = schema.get("items"), schema.get("prefixItems")
        bounds = self._bounds(schema, "minItems", "maxItems", path)
        if isinstance(items, list):
            raise unsupported(path, "items", "a list of schemas (old tuples): use prefixItems")
        if prefix is not None:
            if not isinstance(prefix, list) or not prefix:
                raise invalid(path + "/prefixItems", "must be a non-empty list of schemas")
            if items is not None and items is not False:
                raise unsupported(
                    path,
                    "items",
                    "beside prefixItems: the grammar writes the "
                    "prefixItems and no more (items: false)",
                )
            if bounds:
                raise unsupported(
                    path,
                    next(iter(bounds)),
                    "beside prefixItems: the grammar writes one item per prefixItems entry",
                )
            return {
                "type": "array",
                "prefixItems": [
                    self._node(p, f"{path}/prefixItems/{i}", depth + 1, ambiguity)
                    for i, p in enumerate(prefix)
                ],
            }
        if items is None:
            if bounds:
                raise unsupported(
                    path, next(iter(bounds)), "without items: give items to bound an array"
                )
            return {"type": "array"}
        # {} reads as any object to the converter, but as no items at all where it looks for
        # items: {"type": "object"} says the same and is not empty.
        item = self._node(items, path + "/items", depth + 1, ambiguity) or {"type": "object"}
        return {"type": "array", "items": item} | bounds

    def _string(self, schema: dict[str, Any], path: str) -> dict[str, Any]:
        used = [k for k in ("pattern", "format") if k in schema]
        lengths = self._bounds(schema, "minLength", "maxLength", path)
        if len(used) + bool(lengths) > 1:
            both = (used + list(lengths))[:2]
            raise unsupported(path, both[1], f"beside {both[0]}: the grammar follows only one")
        if "pattern" in schema:
            return {"type": "string", "pattern": self._pattern(schema["pattern"], path)}
        if "format" in schema:
            fmt = schema["format"]
            if fmt not in FORMATS:
                raise unsupported(
                    path, "format", f"{cut(str(fmt))!r}; the formats are {', '.join(FORMATS)}"
                )
            return {"type": "string", "format": fmt}
        return {"type": "string"} | lengths

    def _pattern(self, pattern: Any, path: str) -> str:
        if not isinstance(pattern, str):
            raise invalid(path + "/pattern", "must be a string")
        try:
            return json_pattern.rewrite(pattern, self.limits.max_repeat)
        except json_pattern.PatternError as error:
            raise unsupported(path + "/pattern", error.feature, error.why) from None

    def _leads(self, schema: Any, seen: set[str]) -> set[str]:
        """The first characters of the JSON that `schema` allows, as LEADS classes."""
        if not isinstance(schema, dict):
            return set()
        if isinstance(ref := schema.get("$ref"), str):
            parts = ref.split("/")
            if ref in seen or len(parts) != 3 or parts[1] not in self.defs:
                return set()
            return self._leads(self.defs[parts[1]].get(parts[2]), seen | {ref})
        if isinstance(alternatives := schema.get("anyOf"), list):
            return set().union(*(self._leads(a, seen) for a in alternatives))
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else schema["enum"]
            kinds = set().union(*(_json_types(v) for v in values)) if values else set()
        else:
            kind = schema.get("type")
            implied = {k for k, keys in KIND_KEYS.items() if keys & schema.keys()}
            if not schema.keys() - ANNOTATIONS:
                implied = {"object"}  # the converter reads {} as any object
            kinds = set(kind) if isinstance(kind, list) else {kind} if kind else implied
        return {LEADS[k] for k in kinds if k in LEADS}


def check_schema(schema: dict[str, Any], limits: SchemaLimits | None = None) -> dict[str, Any]:
    """The schema as the converter should read it: annotations dropped, a list of types made
    alternatives, patterns rewritten. InvalidArgument names the first keyword it cannot
    enforce (UNSUPPORTED_SCHEMA_FEATURE) or the first bad value (INVALID_PARAMETER)."""
    return _Checker(schema, limits or SchemaLimits()).root(schema)
