"""`isiqbot applications export`: a period's applications as CSV or XLSX, for reports.

Applications are filed through the dialog on a real database and closed by staff through the desk;
the command runs as staff run it (in-process, its output read back with `csv` and `openpyxl`, and once
as a process for what it says on bad input). Personal data is masked unless `--full`; every text cell
a spreadsheet would run as a formula is escaped, whatever path brought it in.
"""

from __future__ import annotations

import argparse
import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import update
from sqlmodel import col, select

from bot.core.service import Conversations
from bot.core.settings import Settings
from bot.staff.cli import add_applications_parser, cmd_applications
from bot.staff.desk import StaffDesk
from bot.staff.export import COLUMNS, Period, escaped, write_csv
from dialogs.lifecycle import Status
from locales import Msg, translate
from storage.db import Database
from storage.models import Application
from tests.chat import PLAIN, Chat, fill_residential
from tests.conftest import Clock
from tests.processes import isiqbot_env, run_isiqbot

PARTNER = "+994996958257"
HOSTILE = [
    '=HYPERLINK("http://evil.example","bax")',
    "@SUM(1+1)",
    "+cmd|' /C calc'!A0",
    "-1+1",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",  # full-width: an = to some spreadsheets
]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isiqbot")
    add_applications_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["applications", "export", *argv])


async def export(settings: Settings, *argv: str) -> int:
    return await cmd_applications(settings, parse(*argv))


async def file(service: Conversations, user: str, phone: str, email: str | None = None) -> Application:
    """An application sent through the dialog from chat `user`; its e-mail set as if typed."""
    chat = Chat(service, user=user)
    await fill_residential(chat, phone)
    await chat.press("send")
    async with service.db.transaction() as session:
        app = (await session.scalars(select(Application).order_by(col(Application.id).desc()))).first()
        assert app is not None
        app.email = email
        return app


def read_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")  # a byte-order mark: a spreadsheet reads the letters right
    return list(csv.DictReader(io.StringIO(text[1:])))


async def test_a_period_is_exported_masked_and_in_full(
    service: Conversations, settings: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await file(service, "elcin", PLAIN, email="elcin.m@example.az")
    desk = StaffDesk(service.db, clock=service.clock)
    await desk.set_status(first.number, Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status(first.number, Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    clock.advance(days=3)
    second = await file(service, "lale", PARTNER)

    assert await export(settings, "--from", "2026-11-27", "--to", "29.11.2026") == 0
    out, err = capsys.readouterr()
    rows = read_csv(out)
    assert list(rows[0]) == list(COLUMNS)
    assert [r["number"] for r in rows] == [first.number]  # the second came on 30 November
    row = rows[0]
    assert row["registered"] == "27.11.2026 13:00" and row["closed"] == "27.11.2026 13:00"
    words = (translate(Msg("status.completed"), "en"), translate(Msg("reason.no_power"), "en"))
    assert (row["status"], row["reason"], row["department"]) == (*words, "")
    assert row["mobile"] == "'+994 99 ***-**-79" and row["email"] == "e***@example.az"  # + starts a formula
    assert row["applicant"] == "M. E. R." and row["location"] == ""
    assert "Məmmədov" not in out and "6510079" not in out and "elcin.m" not in out
    assert row["result"] == "Kabel dəyişdirildi." and row["account"] == first.account_code
    assert err.strip() == "1 application(s) exported (personal data masked)"

    assert await export(settings, "--from", "2026-11-27", "--to", "2026-11-30", "--full") == 0
    out, err = capsys.readouterr()
    rows = read_csv(out)
    assert [r["number"] for r in rows] == [first.number, second.number]
    assert rows[0]["mobile"] == "'+994996510079" and rows[0]["email"] == "elcin.m@example.az"
    assert rows[0]["applicant"].startswith("Məmmədov Elçin") and rows[1]["closed"] == ""
    assert "in full: keep the file safe" in err


async def test_every_cell_a_spreadsheet_would_run_is_escaped_in_both_formats(
    service: Conversations, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    apps = [await file(service, f"u{i}", PLAIN) for i in range(len(HOSTILE))]
    async with service.db.transaction() as session:  # as an older version, or an import, may have left them
        for app, text in zip(apps, HOSTILE, strict=True):
            await session.execute(
                update(Application).where(Application.id == app.id).values(description=text, address=text)
            )
    desk = StaffDesk(service.db, clock=service.clock)  # and as staff may write a result today
    await desk.set_status(apps[0].number, Status.REJECTED, "staff:1", "=1+1 bizim deyil")

    assert await export(settings, "--from", "2026-11-27", "--to", "2026-11-27") == 0
    rows = read_csv(capsys.readouterr().out)
    assert [r["description"] for r in rows] == ["'" + text for text in HOSTILE]
    assert [r["address"] for r in rows] == ["'" + text for text in HOSTILE]
    assert rows[0]["result"] == "'=1+1 bizim deyil"

    book = tmp_path / "report.xlsx"
    assert (
        await export(
            settings, "--from", "2026-11-27", "--to", "2026-11-27", "--format", "xlsx", "-o", str(book)
        )
        == 0
    )
    assert f"to {book}" in capsys.readouterr().err and not (tmp_path / "report.xlsx.partial").exists()
    sheet = load_workbook(book).active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    assert header == list(COLUMNS)
    description = header.index("description") + 1
    for index, text in enumerate(HOSTILE, start=2):
        cell = sheet.cell(index, description)
        assert cell.data_type == "s" and cell.value == "'" + text.replace("\r", "\n")  # text, never a formula
    registered = sheet.cell(2, header.index("registered") + 1)
    assert registered.value == datetime(2026, 11, 27, 13, 0) and registered.is_date


def test_plain_text_is_left_as_it_is() -> None:
    for text in ("Əliyeva-Məmmədova", "28 May küçəsi 47", "—", "Mənzildə işıq yoxdur", "a=b"):
        assert escaped(text) == text


async def test_a_long_period_is_read_in_batches_and_a_department_alone(
    service: Conversations, settings: Settings, sample_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    apps = [await file(service, f"u{i}", PLAIN) for i in range(5)]
    async with service.db.transaction() as session:
        await session.execute(
            update(Application).where(Application.id == apps[3].id).values(department="gence")
        )
    out = io.StringIO()
    period = Period.of_days(date(2026, 11, 1), date(2026, 11, 30))
    assert await write_csv(out, sample_db, period, None, False, batch=2) == 5
    assert [r["number"] for r in read_csv(out.getvalue())] == [a.number for a in apps]
    assert await export(settings, "--from", "2026-11-01", "--to", "2026-11-30", "--department", "gence") == 0
    assert [r["number"] for r in read_csv(capsys.readouterr().out)] == [apps[3].number]
    assert (
        Period.of_days(date(2026, 11, 27), date(2026, 11, 27)).end - timedelta(days=1)
        == Period.of_days(date(2026, 11, 27), date(2026, 11, 27)).start
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "2026-11-30", "--to", "2026-11-01"], "--to 2026-11-01 is before --from 2026-11-30"),
        (
            ["--from", "2026-11-01", "--to", "2026-11-30", "--format", "xlsx"],
            "--format xlsx needs --output FILE",
        ),
        (
            ["--from", "yesterday", "--to", "2026-11-30"],
            "not a day: 'yesterday' (write 2026-11-01 or 01.11.2026)",
        ),
        (["--from", "2026-11-01", "--to", "2026-11-30", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["--from", "2026-11-01", "--to", "2026-11-30", "-o", "."], "--output . is a folder"),
        (["--to", "2026-11-30"], "the following arguments are required: --from"),
    ],
)
def test_the_command_refuses_what_it_cannot_use(tmp_path: Path, args: list[str], says: str) -> None:
    result = run_isiqbot(tmp_path, "applications", "export", *args, env=isiqbot_env(tmp_path))
    assert result.returncode != 0 and says in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
