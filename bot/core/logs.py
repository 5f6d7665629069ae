"""Logging for every command: one format, personal data masked in every line, chatty libraries quiet.

Our own log lines already mask what they mention. This is the net under them and under the
libraries: a line that would carry an Azerbaijani phone number, an e-mail address or a FİN is
rewritten before it is written. The database drivers log each statement with its bound values at
DEBUG (aiosqlite does, whatever the engine's `hide_parameters`), so they are kept at WARNING even
when LOG_LEVEL is DEBUG.

`isiqbot chat` writes its log to a file rather than into the conversation (`setup(level, file)`);
the same formatter, so the same masking, is on whichever handler is used.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

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


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str, file: Path | None = None) -> None:
    """Log at `level` to standard error, or appended to `file` (its folder made), every line redacted.

    Raises OSError when the file cannot be opened; logging is then left as it was.
    """
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    handler.setFormatter(RedactingFormatter(FORMAT))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):  # a file of an earlier setup
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
