"""Logging set-up for every gun-hub process: JSON lines for log shippers, text for people.

``GUN_HUB_LOG_FORMAT`` chooses: ``json`` (production), ``text`` (a developer's choice, even
when piping to a pager), or ``auto`` (the default: text when stderr is a terminal, JSON
otherwise, which is what containers, CI and the demo's log files get).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from gun_contract.trace import TraceFilter

LogFormat = Literal["auto", "json", "text"]

_LEVEL_COLOURS = {
    logging.DEBUG: "\033[2m",  # dim
    logging.INFO: "\033[32m",  # green
    logging.WARNING: "\033[33m",  # yellow
    logging.ERROR: "\033[31m",  # red
    logging.CRITICAL: "\033[1;31m",  # bold red
}
_RESET = "\033[0m"


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, component, the trace of the
    declaration version being handled (``trace_id``, gun_contract/trace.py) when there is one,
    and the exception's traceback (``exception``) or stack (``stack``) when the record has
    one."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "component": self.component,
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            entry["trace_id"] = str(trace_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL component logger: message [trace=<id>]``, the level coloured on a
    terminal."""

    def __init__(self, component: str, *, colour: bool) -> None:
        super().__init__()
        self.component = component
        self.colour = colour

    def usesTime(self) -> bool:  # noqa: N802 (logging's name): fills record.asctime
        return True

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        level = f"{record.levelname:<7}"
        if self.colour:
            level = f"{_LEVEL_COLOURS.get(record.levelno, '')}{level}{_RESET}"
        trace_id = getattr(record, "trace_id", None)
        trace = f" trace={trace_id}" if trace_id else ""
        line = f"{record.asctime} {level} {self.component} {record.name}: {record.message}"
        return line + trace


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def wants_json(log_format: LogFormat, stream: TextIO) -> bool:
    """Whether ``log_format`` means JSON lines on ``stream`` (``auto``: unless a terminal)."""
    if log_format == "auto":
        return not _is_terminal(stream)
    return log_format == "json"


def formatter_for(log_format: LogFormat, stream: TextIO, *, component: str) -> logging.Formatter:
    if wants_json(log_format, stream):
        return JsonFormatter(component)
    colour = _is_terminal(stream) and not os.environ.get("NO_COLOR")
    return TextFormatter(component, colour=colour)


def configure_logging(
    level: str,
    *,
    component: str,
    log_format: LogFormat = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger once per process, writing to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, stream, component=component))
    handler.addFilter(TraceFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka and faust are chatty at INFO about every rebalance step.
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
