"""How many retries a backend may take: a share of recent calls plus a small reserve.

A budget rather than a fixed count per call: when a whole backend is failing, retrying every
call would multiply its load just when it can least take it; a budget caps retries at a
fraction of the traffic, while the reserve lets a quiet backend still fail over.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

BUCKETS = 10  # the window in this many counters: memory stays fixed whatever the call rate


class RetryBudget:
    """Allows retries while those of the last `window_s` seconds stay under `ratio` of the
    calls of that window plus `min_per_s` a second.

    Calls and retries are counted per slice of the window (a tenth of it), not kept one
    timestamp each: a gateway that serves millions of calls holds ten pairs of counters.
    The window therefore moves in slices, so it spans between 0.9 and 1 `window_s`.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_s: float = 10.0,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ratio, self._reserve = ratio, min_per_s * window_s
        self._slice_s = window_s / BUCKETS
        self._clock = clock
        # (slice number, calls, retries), oldest first; at most BUCKETS of them.
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._calls = self._retries = 0  # totals over the buckets

    def _current(self) -> list[int]:
        """The bucket of this slice, after dropping those that left the window."""
        now = math.floor(self._clock() / self._slice_s)
        while self._buckets and self._buckets[0][0] <= now - BUCKETS:
            _, calls, retries = self._buckets.popleft()
            self._calls -= calls
            self._retries -= retries
        if not self._buckets or self._buckets[-1][0] != now:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def record_call(self) -> None:
        self._current()[1] += 1
        self._calls += 1

    def try_retry(self) -> bool:
        """Takes one retry from the budget, if there is one left."""
        bucket = self._current()
        if self._retries >= self._ratio * self._calls + self._reserve:
            return False
        bucket[2] += 1
        self._retries += 1
        return True
