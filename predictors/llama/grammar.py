"""Turns a request's JSON format into a GBNF grammar for llama.cpp's grammar sampler, with
llama-cpp-python's own converter (llama_cpp.llama_grammar), and checks that llama.cpp accepts
it before the request joins the batch.
"""

from __future__ import annotations

import re
from typing import Any

import llama_cpp
from llama_cpp import llama_grammar

from predictors.llama.json_schema import SchemaLimits, check_schema, unsupported
from predictors.llama.sampling import ROOT, compile_grammar
from runtime.field_errors import invalid_field
from runtime.quoting import cut
from runtime.response_format import SCHEMA_FIELD, JsonFormat

DEFAULT_MAX_GRAMMAR_BYTES = 128 * 1024
# A character of a JSON string. The converter's own rule, [^"\\], lets raw control characters
# (a newline) into strings, which JSON forbids; this is the rule of its JSON_GBNF.
JSON_CHAR = llama_grammar.BuiltinRule(
    r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})', []
)
BUILTINS = {**llama_grammar.PRIMITIVE_RULES, **llama_grammar.STRING_FORMAT_RULES, "char": JSON_CHAR}
NAME_CHARS = re.compile(r"[^a-zA-Z0-9-]+")


class _Converter(llama_grammar.SchemaConverter):
    """llama-cpp-python's converter with three fixes its upstream (llama.cpp's
    json_schema_to_grammar.py) has made since: literals escape backslashes, so an enum value
    "a\\b" comes out as written; $ref rules get names of their own, so two definitions named
    alike, or a definition named like a property, do not share a rule; and the built-in rules
    hold their names from the start, so a property named like one ("integral" with "part")
    does not replace it."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._rules.update({name: rule.content for name, rule in BUILTINS.items()})
        self._ref_rules: dict[str, str] = {}

    def _format_literal(self, literal: str) -> str:
        escaped = (
            literal.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
        return f'"{escaped}"'

    def _add_primitive(self, name: str, rule: llama_grammar.BuiltinRule) -> str:
        if rule is llama_grammar.PRIMITIVE_RULES["char"]:
            rule = JSON_CHAR
        return super()._add_primitive(name, rule)

    def _fresh_name(self, base: str) -> str:
        taken = set(self._rules) | set(self._ref_rules.values())
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}{i}"
        return name

    def _resolve_ref(self, ref: str) -> str:
        name = self._ref_rules.get(ref)
        if name is None:
            name = self._fresh_name("ref-" + NAME_CHARS.sub("-", ref.split("/")[-1]))
            self._ref_rules[ref] = name  # before the visit: a recursive reference finds it
            key = self.visit(self._refs[ref], name)
            if key != name:  # a plain type's rule keeps its built-in name
                self._rules[name] = key
        return name


def _references(rule: str) -> set[str]:
    """The rule names a rule's text refers to, outside its literals and classes."""
    names: set[str] = set()
    i = 0
    while i < len(rule):
        c = rule[i]
        if c in '"[':
            close = '"' if c == '"' else "]"
            i += 1
            while i < len(rule) and rule[i] != close:
                i += 2 if rule[i] == "\\" else 1
            i += 1
        elif c.isalnum() or c == "-":
            start = i
            while i < len(rule) and (rule[i].isalnum() or rule[i] == "-"):
                i += 1
            names.add(rule[start:i])
        else:
            i += 1
    return names


def _reachable(rules: dict[str, str]) -> dict[str, str]:
    """The rules the root needs: the built-ins held from the start are mostly unused."""
    seen, todo = set(), [ROOT]
    while todo:
        name = todo.pop()
        if name not in seen and name in rules:
            seen.add(name)
            todo.extend(_references(rules[name]))
    return {name: rule for name, rule in rules.items() if name in seen}


def schema_grammar(schema: dict[str, Any], limits: SchemaLimits) -> str:
    """The GBNF grammar of JSON valid against `schema` (checked first)."""
    converter = _Converter()
    clean = converter.resolve_refs(check_schema(schema, limits), "schema")
    converter.visit(clean, "")
    rules = _reachable(converter._rules)
    return "\n".join(f"{name} ::= {rule}" for name, rule in sorted(rules.items()))


def compiles(grammar: str) -> bool:
    """Whether llama.cpp parses `grammar` (no vocabulary needed to parse)."""
    try:
        sampler = compile_grammar(None, grammar)
    except ValueError:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def json_grammar(
    fmt: JsonFormat,
    max_grammar_bytes: int = DEFAULT_MAX_GRAMMAR_BYTES,
    limits: SchemaLimits | None = None,
) -> str:
    """The grammar that enforces `fmt`: llama-cpp-python's JSON grammar for any object, or the
    converter's for a schema. InvalidArgument names what cannot be enforced or is too big."""
    if fmt.schema is None:
        return llama_grammar.JSON_GBNF
    try:
        grammar = schema_grammar(fmt.schema, limits or SchemaLimits())
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as error:
        # The checks should leave nothing the converter trips on; if something is left,
        # the caller learns it is this schema, not the server.
        why = f"the grammar converter cannot read it ({cut(str(error))})"
        raise unsupported("", "schema", why) from None
    size = len(grammar.encode())
    if size > max_grammar_bytes:
        raise invalid_field(
            SCHEMA_FIELD,
            f"makes a grammar of {size} bytes; at most {max_grammar_bytes} "
            "(--max-grammar-bytes): make the schema smaller (fewer properties, lower maxLength, "
            "maxItems or repetition counts)",
            limit="--max-grammar-bytes",
            max=str(max_grammar_bytes),
            actual=str(size),
        )
    if not compiles(grammar):
        raise unsupported("", "schema", "llama.cpp does not accept the grammar made from it")
    return grammar
