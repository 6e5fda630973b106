"""Log lines a caller can cause: at most one per interval, short, saying how many were left out."""

from __future__ import annotations

import logging

import pytest

from runtime.log_limit import CallerGoneFilter, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_interval_then_the_count_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("t.limited"), interval_s=10, clock=clock)
    caplog.set_level(logging.INFO)
    assert [limited.log(logging.WARNING, "bad body %d", i) for i in range(5)] == [True] + [
        False
    ] * 4
    clock.now += 10
    assert limited.log(logging.WARNING, "bad body %d", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "bad body 0",
        "bad body 5 (4 more like it in the last 10 s)",
    ]


def _execute_batch_error() -> logging.LogRecord:
    try:
        raise RuntimeError("Failed execute_batch")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    return logging.LogRecord(
        "grpc._cython.cygrpc",
        logging.ERROR,
        __file__,
        1,
        "ExecuteBatchError raised in core by servicer method [%s]",
        ("/servemesh.v1.PredictionService/GetModel",),
        exc_info,
    )


def test_grpcs_caller_gone_tracebacks_become_one_short_warning() -> None:
    clock = Clock()
    gone = CallerGoneFilter(interval_s=10, clock=clock)
    first = _execute_batch_error()
    assert gone.filter(first)
    assert (first.levelno, first.exc_info) == (logging.WARNING, None)
    assert first.getMessage() == (
        "could not send the answer of [/servemesh.v1.PredictionService/GetModel]: "
        "the caller had gone"
    )
    assert not any(gone.filter(_execute_batch_error()) for _ in range(3))
    clock.now += 10
    later = _execute_batch_error()
    assert gone.filter(later) and "(3 more like it in the last 10 s)" in later.getMessage()
    other = logging.LogRecord("grpc", logging.ERROR, __file__, 1, "something else", (), None)
    assert gone.filter(other) and other.levelno == logging.ERROR
