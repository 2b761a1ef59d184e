"""Log lines: plain text for development, one JSON object per line in production.

`LOG_FORMAT=json` selects `JsonFormatter` (settings.LOGGING). Either format
carries what identifies the work a line is about, where there is one: the
WebSocket connection (`connection_id`), its device and user, and the `ref` of
the request being answered. These are context variables, bound once where the
connection is set up (`bind`) and once per request (`request_ref`): every task
a connection starts copies them, so a log call anywhere below needs no extra
argument. The hub's own tasks start before any connection binds, and carry none.
"""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

_context: ContextVar[dict | None] = ContextVar("log_context", default=None)
_ref: ContextVar = ContextVar("log_request_ref", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def bind(**fields) -> None:
    """Add `fields` to every line logged from this task and the tasks it starts."""
    _context.set({**(_context.get() or {}), **fields})


def request_ref(ref):
    """The ref of the request being run; returns a token for `reset_request_ref`."""
    return _ref.set(ref)


def reset_request_ref(token) -> None:
    _ref.reset(token)


def context() -> dict:
    fields = dict(_context.get() or {})
    ref = _ref.get()
    if ref is not None:
        fields["ref"] = ref
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message,
    process id, the bound context, any `extra=` fields, and the traceback as
    one string (so a multi-line traceback stays one line)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        line.update(context())
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message [key=value ...]`: the context at the end, when there is one."""

    def __init__(self):
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = context()
        if not fields:
            return text
        suffix = " ".join(f"{key}={value}" for key, value in fields.items())
        head, newline, rest = text.partition("\n")
        return f"{head} [{suffix}]{newline}{rest}"
