"""JSON log lines: one object per line with the fields the docs promise, the call's ids from
context variables or from `extra=`, and nothing a caller sends able to break a line."""

from __future__ import annotations

import contextvars
import json
import logging
import sys

import pytest

from runtime import logs


def record(message: str, *args: object, **extra: str) -> logging.LogRecord:
    made = logging.LogRecord("gateway.dispatch", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def formatted(made: logging.LogRecord) -> dict[str, str]:
    line = logs.JsonFormatter().format(made)
    assert "\n" not in line
    return json.loads(line)


def outside_any_call(function, *args):
    """`function` in a fresh context, as a line logged between calls."""
    return contextvars.Context().run(function, *args)


def test_a_line_has_time_level_logger_and_message() -> None:
    entry = outside_any_call(formatted, record("routing %s -> %s", "a", "b"))
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["message"] == "routing a -> b"
    assert (entry["level"], entry["logger"]) == ("INFO", "gateway.dispatch")
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_a_line_in_a_call_has_its_ids() -> None:
    def in_call() -> dict[str, str]:
        logs.bind("req-1", "0af7651916cd43dd8448eb211c80319c")
        return formatted(record("failed"))

    entry = outside_any_call(in_call)
    assert entry["request_id"] == "req-1"
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_extra_ids_win_and_are_not_mixed_with_the_context() -> None:
    def in_call() -> dict[str, str]:
        logs.bind("this-call", "a" * 32)
        # A line about another call (the batching thread's, say), traced or not.
        return formatted(record("slot 3", **logs.call_ids("other-call", "")))

    entry = outside_any_call(in_call)
    assert entry["request_id"] == "other-call"
    assert "trace_id" not in entry


def test_a_traceback_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("unhandled")
        made.exc_info = sys.exc_info()
    entry = outside_any_call(formatted, made)
    assert "ValueError: boom" in entry["exception"]


def test_a_callers_bytes_cannot_split_or_forge_a_line() -> None:
    hostile = 'x"}\n{"level": "CRITICAL", "message": "forged'
    entry = outside_any_call(formatted, record("bad model %s", hostile))
    assert entry["message"] == f"bad model {hostile}"
    assert entry["level"] == "INFO"


def test_the_format_is_chosen_by_name() -> None:
    assert isinstance(logs.formatter("json"), logs.JsonFormatter)
    assert not isinstance(logs.formatter("text"), logs.JsonFormatter)
    with pytest.raises(ValueError, match="text, json"):
        logs.formatter("xml")
