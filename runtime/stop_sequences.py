"""Finds stop sequences in streamed text without ever sending part of one to the client."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Holds back the tail of the text that could still grow into a stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns the text that is safe to send, and whether a stop sequence was reached."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        # The stop that ends first wins, as it would in a stream of one character at a time:
        # so the answer does not depend on how the text was split ("abcd" and "c": "ab").
        ends = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if ends:
            self._held = ""
            return buffer[: min(ends)[1]], True
        keep = self._longest_partial_stop(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """The held-back text, once no more text will come."""
        held, self._held = self._held, ""
        return held

    def _longest_partial_stop(self, buffer: str) -> int:
        """The length of the longest suffix of `buffer` that starts some stop sequence."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:n]):
                    longest = n
                    break
        return longest
