"""Logging for every command: one format, personal data masked in every line, chatty libraries quiet.

Our own log lines already mask what they mention. This is the net under them and under the
libraries: a line that would carry an Azerbaijani phone number, an e-mail address or a FİN is
rewritten before it is written. The database drivers log each statement with its bound values at
DEBUG (aiosqlite does, whatever the engine's `hide_parameters`), so they are kept at WARNING even
when LOG_LEVEL is DEBUG.

`isiqbot chat` writes its log to a file rather than into the conversation (`setup(level, file)`);
the same formatter, so the same masking, is on whichever handler is used.

Two formats (`setup(..., fmt=...)`, LOG_FORMAT): "text", a line for people, and "json", one object a
line for a log collector. Both carry the update being handled (`bot.core.context`): the text line
ends in `[channel update application]`, the JSON object has them as fields. Masked the same way.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from bot.core import context
from dialogs.validate import mask_email, mask_phone

# Loggers that write bound SQL parameters or whole payloads at DEBUG.
QUIET = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool", "aiogram.event", "hpack")
PHONE = re.compile(r"(?<![\w+.])(?:\+?994|0)(?:[ -]?\d){9}(?!\d)")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A FİN: 7 characters of 0-9 and A-Z without I and O, with at least one digit and one letter.
FIN = re.compile(r"\b(?=[0-9A-Z]{0,6}\d)(?=[0-9A-Z]{0,6}[A-Z])[0-9A-HJ-NP-Z]{7}\b")


def redact(text: str) -> str:
    """The text with phone numbers, e-mail addresses and FİNs masked."""
    text = EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    text = PHONE.sub(lambda m: _phone(m.group(0)), text)
    return FIN.sub(lambda m: m.group(0)[:1] + "******", text)


def _phone(found: str) -> str:
    digits = re.sub(r"\D", "", found)
    if digits.startswith("0"):
        digits = "994" + digits[1:]
    return mask_phone(digits)


class ContextFilter(logging.Filter):
    """Stamps each record a handler writes with the fields of the update it was logged in.

    Read when the line is logged, not when it is formatted; a failure logged after its update's block
    ended (by the web server's middleware) takes the fields the exception carried out of it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(getattr(record, "log_context", None), Mapping):
            fields = context.current()
            if not fields and record.exc_info:
                fields = context.of_exception(record.exc_info[1])
            record.log_context = fields
        return True


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The record's context fields, in their order, masked (a value could quote a person)."""
    found = getattr(record, "log_context", None)
    if not isinstance(found, Mapping):
        found = context.current()
    return {key: redact(found[key]) for key in context.FIELDS if key in found}


class RedactingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = fields_of(record)
        return f"{line} [{' '.join(fields.values())}]" if fields else line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601, milliseconds), level, logger, message, the
    context fields that are set, and exc_info / stack_info when there are any; every text masked."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **fields_of(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            line["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False)


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return RedactingFormatter(FORMAT)
    raise ValueError(f"log format {fmt!r} is none of {', '.join(FORMATS)}")


def setup(level: str, file: Path | None = None, fmt: str = "text") -> None:
    """Log at `level` to standard error, or appended to `file` (its folder made), every line redacted,
    as text or as JSON (`fmt`).

    Raises OSError when the file cannot be opened; logging is then left as it was.
    """
    chosen = formatter(fmt)
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    handler.setFormatter(chosen)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):  # a file of an earlier setup
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
