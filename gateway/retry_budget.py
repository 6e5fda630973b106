"""How many retries a backend may take: a share of recent calls plus a small reserve.

A budget rather than a fixed count per call: when a whole backend is failing, retrying every
call would multiply its load just when it can least take it; a budget caps retries at a
fraction of the traffic, while the reserve lets a quiet backend still fail over.
"""

from __future__ import annotations

import collections
import time


class RetryBudget:
    """Allows retries while those of the last `window_s` seconds stay under `ratio` of the
    calls of that window plus `min_per_s` a second."""

    def __init__(self, ratio: float = 0.2, min_per_s: float = 10.0, window_s: float = 10.0) -> None:
        self._ratio, self._reserve, self._window_s = ratio, min_per_s * window_s, window_s
        self._calls: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()

    def record_call(self) -> None:
        self._calls.append(time.monotonic())

    def try_retry(self) -> bool:
        """Takes one retry from the budget, if there is one left."""
        now = time.monotonic()
        for times in (self._calls, self._retries):
            while times and times[0] < now - self._window_s:
                times.popleft()
        if len(self._retries) >= self._ratio * len(self._calls) + self._reserve:
            return False
        self._retries.append(now)
        return True
