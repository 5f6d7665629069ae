"""Log lines never hold a full phone number, e-mail address or FİN, whoever writes them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.core import logs
from bot.core.logs import redact


@pytest.mark.parametrize(
    ("line", "kept", "gone"),
    [
        ("SMS to +994996510079 sent", "+994 99 ***-**-79", "996510079"),
        ("wa_id 994996510079 wrote", "+994 99 ***-**-79", "996510079"),
        ("typed 050 123 45 67", "+994 50 ***-**-67", "123 45 67"),
        ("typed 0501234567", "+994 50 ***-**-67", "1234567"),
        ("to elcin.m@example.az", "e***@example.az", "elcin.m@"),
        ("parameters ('M9CGRC9', 'Məmmədov')", "M******", "M9CGRC9"),
    ],
)
def test_personal_data_is_masked(line: str, kept: str, gone: str) -> None:
    assert kept in redact(line) and gone not in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "application TX-2026-000001 registered",
        "subscriber code 168808605066007",  # 15 digits: not a phone
        "update 123456789 handled in 0.0123456789 s",
        "wamid.HBgLOTk0OTk2NTEwMDc5FQIAEhgg",
        "listening on http://127.0.0.1:8080",
        "STATUS ACCEPTED",
    ],
)
def test_what_is_not_personal_stays_as_it_is(line: str) -> None:
    assert redact(line) == line


def test_the_database_drivers_stay_quiet_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("DEBUG")
    try:
        logging.getLogger("aiosqlite").debug("executing %s with ('+994996510079',)", "SELECT 1")
        logging.getLogger("isiqbot.test").debug("a line of ours to %s", "+994996510079")
    finally:
        logs.setup("WARNING")
    written = capsys.readouterr().err
    assert "executing" not in written  # the statement and its values are not written at all
    assert "a line of ours to +994 99 ***-**-79" in written


def test_a_log_file_gets_the_lines_masked_and_standard_error_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`isiqbot chat` logs to a file: the same format and the same masking as on standard error."""
    file = tmp_path / "data" / "isiqbot-chat.log"  # the folder is made
    logs.setup("INFO", file)
    try:
        logging.getLogger("isiqbot.test").info("SMS to %s for %s", "+994996510079", "TX-2026-000001")
        logging.getLogger("aiosqlite").info("executing with ('+994996510079',)")  # quiet at INFO too
    finally:
        logs.setup("WARNING")
    assert capsys.readouterr().err == ""
    (line,) = file.read_text(encoding="utf-8").splitlines()
    assert line.endswith(" INFO isiqbot.test: SMS to +994 99 ***-**-79 for TX-2026-000001")
