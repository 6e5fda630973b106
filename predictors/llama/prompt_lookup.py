"""Prompt-lookup drafting for speculative decoding: the tokens that followed the last place
the sequence's latest n-gram occurred earlier in its own prompt or output.

Text that rewrites, edits or quotes its prompt repeats long runs of it; there the guess is
often right, and the model checks several guessed tokens in one decode instead of producing
one token per decode. A guess costs no model: a dictionary lookup per step.
"""

from __future__ import annotations

NGRAM_MAX = 3  # the longest n-gram looked up; a longer match predicts the continuation better
NGRAM_MIN = 2  # the shortest; a single repeated token predicts too little to be worth a draft


class PromptLookup:
    """The n-grams of one sequence's tokens (prompt, then output), indexed as they arrive, so
    a draft costs a dictionary lookup per n-gram size rather than a scan of the context."""

    def __init__(self, tokens: list[int]) -> None:
        self._tokens = list(tokens)
        # n-gram -> the index just after its latest occurrence, over every occurrence that
        # has a token after it (so not the n-gram the sequence currently ends with).
        self._after: dict[tuple[int, ...], int] = {}
        self._indexed = 0  # the n-grams ending before this index are in _after

    def append(self, token: int) -> None:
        self._tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the longest
        n-gram the sequence ends with; empty when none occurred before."""
        if limit <= 0:
            return []
        tokens = self._tokens
        self._index_to(len(tokens) - 1)
        for n in range(NGRAM_MAX, NGRAM_MIN - 1, -1):
            if len(tokens) < n:
                continue
            start = self._after.get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start : start + limit]
        return []

    def _index_to(self, end: int) -> None:
        """Indexes every n-gram that ends before `end` (each has its next token)."""
        tokens, after = self._tokens, self._after
        for last in range(self._indexed, end):
            for n in range(NGRAM_MIN, NGRAM_MAX + 1):
                if last + 1 >= n:
                    after[tuple(tokens[last + 1 - n : last + 1])] = last + 1
        self._indexed = max(self._indexed, end)
