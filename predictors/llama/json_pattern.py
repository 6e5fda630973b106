"""Rewrites a JSON Schema `pattern` into the regular-expression subset that llama-cpp-python's
schema converter turns into grammar rules correctly.

The converter copies a pattern into the grammar nearly as it is, so `.`, `[^a]` or `[ -~]`
would let the model write a raw `"`, `\\` or control character into the JSON string: broken
JSON. The rewrite keeps every character class clear of those, and refuses (naming it) what
the converter would translate wrongly. Every string the rewritten pattern matches also
matches the original, so the output always validates; a class may allow fewer characters.
"""

from __future__ import annotations

import re
import string
import warnings

# What a JSON string cannot hold unescaped: control characters, the quote and the backslash.
FORBIDDEN = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F))
# Shorthand classes as ranges. Python's \d, \w and \s also match non-ASCII digits, letters
# and spaces, so these are subsets: safe where they allow, wrong where they would exclude,
# which is why negated shorthands are refused. \s keeps only the space: tab and newline
# cannot stand raw in a JSON string.
SHORTHANDS: dict[str, tuple[tuple[int, int], ...]] = {
    "d": ((0x30, 0x39),),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "s": ((0x20, 0x20),),
}
QUANTIFIERS = "*+?{"
REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")


class PatternError(ValueError):
    """A pattern the grammar cannot enforce: `feature` is the part of it, `why` the reason."""

    def __init__(self, feature: str, why: str) -> None:
        super().__init__(f"{feature}: {why}")
        self.feature, self.why = feature, why


def _char(code: int) -> str:
    """One code point as a grammar escape, which the converter copies into a class as it is."""
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def _subtract(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`ranges` without the FORBIDDEN code points."""
    result = []
    for lo, hi in ranges:
        for f_lo, f_hi in FORBIDDEN:
            if hi < f_lo or lo > f_hi:
                continue
            if lo < f_lo:
                result.append((lo, f_lo - 1))
            lo = max(lo, f_hi + 1)
        if lo <= hi:
            result.append((lo, hi))
    return result


def _class(ranges: list[tuple[int, int]], negated: bool) -> str:
    parts = [_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges]
    return ("[^" if negated else "[") + "".join(parts) + "]"


JSON_CHAR = _class(list(FORBIDDEN), negated=True)  # what `.` becomes


class _Rewriter:
    """One pass over a pattern's body (between ^ and $)."""

    def __init__(self, body: str, max_repeat: int) -> None:
        self.body, self.max_repeat = body, max_repeat
        self.i = 0
        self.out: list[str] = []
        self.depth = 0
        self.repeatable = False  # whether the last item may take a quantifier

    def run(self) -> str:
        while self.i < len(self.body):
            self._item()
        return "".join(self.out)

    def _emit(self, text: str, repeatable: bool = True) -> None:
        self.out.append(text)
        self.repeatable = repeatable

    def _item(self) -> None:
        c = self.body[self.i]
        if c == "\\":
            self._emit(self._escape_outside())
        elif c == "[":
            self._emit(self._class())
        elif c == "(":
            self._group()
        elif c == ")":
            self.depth -= 1
            self.i += 1
            self._emit(")")
        elif c == "|":
            if self.depth == 0:
                raise PatternError("|", "alternatives at the top level: group them, as in ^(a|b)$")
            self.i += 1
            self._emit("|", repeatable=False)
        elif c in QUANTIFIERS:
            self._quantifier()
        elif c == ".":
            self.i += 1
            self._emit(JSON_CHAR)
        elif c in "^$":
            raise PatternError(c, "anchors are supported only at the start (^) and end ($)")
        else:
            self.i += 1
            self._emit(self._literal(c))

    def _literal(self, c: str) -> str:
        code = ord(c)
        if any(lo <= code <= hi for lo, hi in FORBIDDEN):
            raise PatternError(
                repr(c), "a quote, backslash or control character cannot be generated as is"
            )
        return _class([(code, code)], negated=False) if c in "]}" else c

    def _escape_outside(self) -> str:
        if self.i + 1 >= len(self.body):
            raise PatternError("\\", "a pattern cannot end in a backslash")
        c = self.body[self.i + 1]
        self.i += 2
        if c in SHORTHANDS:
            return _class(list(SHORTHANDS[c]), negated=False)
        return _class([self._escaped_punctuation(c)], negated=False)

    def _escaped_punctuation(self, c: str) -> tuple[int, int]:
        if c in "DWS":
            raise PatternError(
                f"\\{c}", "negated shorthand classes are not supported; write the class out"
            )
        if c.isalnum() or c == "_" or c not in string.punctuation or c in '"\\':
            raise PatternError(f"\\{c}", "this escape is not supported")
        return (ord(c), ord(c))

    def _class(self) -> str:
        start = self.i
        self.i += 1
        negated = self.body.startswith("^", self.i)
        self.i += negated
        if self.body.startswith("]", self.i):
            raise PatternError("[]", "a class that starts with ']'; escape it as \\]")
        ranges: list[tuple[int, int]] = []
        while True:
            if self.i >= len(self.body):
                raise PatternError(self.body[start:], "an unclosed character class")
            if self.body[self.i] == "]":
                self.i += 1
                break
            ranges.extend(self._class_atom(negated))
        if negated:
            return _class(ranges + list(FORBIDDEN), negated=True)
        allowed = _subtract(ranges)
        if not allowed:
            raise PatternError(
                self.body[start : self.i], "the class holds only characters JSON must escape"
            )
        return _class(allowed, negated=False)

    def _class_atom(self, negated: bool) -> list[tuple[int, int]]:
        lo = self._class_char(negated)
        if isinstance(lo, list):  # a shorthand
            return lo
        if self.body.startswith("-", self.i) and not self.body.startswith("-]", self.i):
            self.i += 1
            hi = self._class_char(negated)
            if isinstance(hi, list) or hi < lo:
                raise PatternError(
                    "-", "a range in a class must go from one character to a later one"
                )
            return [(lo, hi)]
        return [(lo, lo)]

    def _class_char(self, negated: bool) -> int | list[tuple[int, int]]:
        c = self.body[self.i]
        if c == "[":
            raise PatternError("[", "nested classes and POSIX classes are not supported")
        if c != "\\":
            self.i += 1
            return ord(c)
        if self.i + 1 >= len(self.body):
            raise PatternError("\\", "a pattern cannot end in a backslash")
        e = self.body[self.i + 1]
        self.i += 2
        if e in SHORTHANDS:
            if negated:
                raise PatternError(
                    f"[^\\{e}]", "shorthand classes inside a negated class are not supported"
                )
            return list(SHORTHANDS[e])
        return self._escaped_punctuation(e)[0]

    def _group(self) -> None:
        if self.body.startswith("(?:", self.i):
            self.i += 3  # the converter knows no (?: but a plain group means the same here
        elif self.body.startswith("(?", self.i):
            raise PatternError(
                "(?", "lookarounds, flags and named groups are not supported; (?:...) is"
            )
        else:
            self.i += 1
        self.depth += 1
        self._emit("(", repeatable=False)

    def _quantifier(self) -> None:
        if not self.repeatable:
            raise PatternError(
                self.body[self.i],
                "a quantifier after a quantifier (lazy or possessive) or "
                "after nothing is not supported",
            )
        c = self.body[self.i]
        if c != "{":
            self.i += 1
            self._emit(c, repeatable=False)
            return
        match = REPEAT.match(self.body, self.i)
        if match is None or not (match.group(1) or match.group(3)):
            # Python reads a '{' that starts no quantifier as itself.
            self.i += 1
            self._emit(_class([(0x7B, 0x7B)], negated=False))
            return
        low, comma, high = match.groups()
        bounds = [int(n) for n in (low or "0", high) if n]
        if max(bounds) > self.max_repeat:
            raise PatternError(
                match.group(0), f"a repetition count above {self.max_repeat} is not supported"
            )
        self.i = match.end()
        self._emit("{" + (low or "0") + comma + high + "}", repeatable=False)


def rewrite(pattern: str, max_repeat: int) -> str:
    """`pattern` as the converter should read it; PatternError for what it cannot enforce."""
    try:
        with warnings.catch_warnings():  # "possible nested set": refused below anyway
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except re.error as error:
        raise PatternError("pattern", f"is not a valid regular expression: {error}") from None
    trailing_backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    if not (pattern.startswith("^") and pattern.endswith("$")) or trailing_backslashes % 2:
        raise PatternError(
            "pattern",
            "must be anchored as ^...$: the grammar makes the whole string match it",
        )
    return "^" + _Rewriter(pattern[1:-1], max_repeat).run() + "$"
