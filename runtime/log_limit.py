"""Log lines that a caller can cause, at most one per interval: a flood of bad calls must not
become a flood of log lines (or a full disk)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class _Interval:
    """Lets one line through per `interval_s` and counts the ones it holds back."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self._interval_s, self._clock = interval_s, clock
        self._next = float("-inf")
        self._left_out = 0

    def admit(self, message: str) -> str | None:
        """`message`, with how many lines were held back since the last, if a line may go
        out now; None otherwise."""
        now = self._clock()
        if now < self._next:
            self._left_out += 1
            return None
        self._next = now + self._interval_s
        if self._left_out:
            message += f" ({self._left_out} more like it in the last {self._interval_s:g} s)"
            self._left_out = 0
        return message


class RateLimitedLog:
    """Writes at most one line per `interval_s`; the next line written says how many were
    left out in between."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = _Interval(interval_s, clock)

    def log(self, level: int, message: str, *args: object, exc_info: object = None) -> bool:
        """Logs `message % args` unless a line went out less than `interval_s` ago; returns
        whether it did."""
        admitted = self._interval.admit(message)
        if admitted is None:
            return False
        self._log.log(level, admitted, *args, exc_info=exc_info)
        return True


class CallerGoneFilter(logging.Filter):
    """grpc logs a full traceback (ExecuteBatchError) when a handler's response cannot be sent
    because its caller already went (a deadline passed, a client cancelled): any client can
    cause one per call. This keeps them to one short warning per `interval_s`."""

    def __init__(
        self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval = _Interval(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("ExecuteBatchError"):
            return True
        admitted = self._interval.admit("could not send the answer of %s: the caller had gone")
        if admitted is None:
            return False
        record.msg, record.args = admitted, (message.rsplit(" ", 1)[-1],)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class CallerInputFilter(logging.Filter):
    """A library's warnings about what a caller sent (OpenTelemetry's, about a malformed W3C
    `tracestate`), which any caller can cause once per call, quoting its own bytes: at most
    one line per `interval_s`, with `summary` instead of what the library said."""

    def __init__(
        self, summary: str, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._summary = summary
        self._interval = _Interval(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        admitted = self._interval.admit(self._summary)
        if admitted is None:
            return False
        record.msg, record.args = admitted, ()
        record.exc_info, record.exc_text = None, None
        return True
