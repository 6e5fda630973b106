"""Log lines as text or as one JSON object each; a JSON line logged during a call carries the
call's request id and trace id, so one request's lines can be found on every server."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
# Set by a server when a call starts (the gateway's dispatcher, a predictor's servicer).
# grpc.aio and uvicorn run every call in an asyncio task of its own, whose context is a copy,
# so a value set during a call stays with that call and needs no reset.
REQUEST_ID: ContextVar[str] = ContextVar("servemesh_request_id", default="")
TRACE_ID: ContextVar[str] = ContextVar("servemesh_trace_id", default="")


def bind(request_id: str, trace_id: str) -> None:
    """Marks every line logged from now on in this call's task as the call's."""
    REQUEST_ID.set(request_id)
    TRACE_ID.set(trace_id)


def call_ids(request_id: str, trace_id: str) -> dict[str, str]:
    """The ids as `extra=` for a line logged about a call outside its task (a worker thread,
    where its context variables do not reach)."""
    return {"request_id": request_id, "trace_id": trace_id}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and, for a line
    of a call, request_id and trace_id (from `extra=`, else the context variables); a
    traceback goes into `exception`. json.dumps escapes line breaks and control characters,
    so nothing a caller sends can split a line or forge one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Both ids from the same place: a line about another call than the task's own
        # must not mix the two.
        if hasattr(record, "request_id"):
            request_id, trace_id = record.request_id, getattr(record, "trace_id", "")
        else:
            request_id, trace_id = REQUEST_ID.get(), TRACE_ID.get()
        if request_id:
            entry["request_id"] = request_id
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for --log-format `log_format` (text or json)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {log_format!r}; use one of {', '.join(LOG_FORMATS)}")
