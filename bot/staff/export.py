"""`isiqbot applications export`: the applications of a period as CSV or XLSX, for reports.

Personal data is masked (`+994 50 ***-**-67`, `e***@example.az`, the applicant's initials, no
location) unless `--full` is given. Every text cell a spreadsheet would read as a formula (one that
starts with =, +, -, @, a tab or a carriage return, or their full-width forms) is escaped with a
leading apostrophe, in both formats, so nothing a subscriber typed runs when the file is opened.
The rows are read in batches by id, each in its own short transaction, so a year of a storm's
applications is written without holding them all in memory or a transaction open.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from sqlmodel import col, select

from dialogs.validate import mask_email, mask_phone
from locales import LOCAL_TZ, Msg, translate
from storage.applications import account_label
from storage.db import Database, as_utc
from storage.models import Application, Person

BATCH = 1000
LANG = "en"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = (
    "number",
    "registered",
    "status",
    "department",
    "kind",
    "account",
    "region",
    "address",
    "reason",
    "description",
    "result",
    "assignee",
    "taken",
    "closed",
    "channel",
    "applicant",
    "mobile",
    "other phones",
    "email",
    "location",
)
CLOSED = ("completed", "rejected", "cancelled")


def escaped(text: str) -> str:
    """A text cell as a spreadsheet must show it: with an apostrophe before what would be a formula."""
    first = unicodedata.normalize("NFKC", text[:1])
    return "'" + text if first and first in FORMULA_STARTS else text


def initials(full_name: str) -> str:
    """Məmmədov Elçin Rasim oğlu → M. E. R.: enough to tell two applicants apart in a report."""
    words = [w for w in full_name.split() if w.lower() not in ("oğlu", "qızı")]
    return " ".join(f"{w[0]}." for w in words[:3])


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime  # the first moment, UTC
    end: datetime  # the moment after the last, UTC

    @classmethod
    def of_days(cls, first: date, last: date) -> Period:
        """From the start of `first` to the end of `last`, Baku days."""
        start = datetime.combine(first, time.min, LOCAL_TZ)
        end = datetime.combine(last + timedelta(days=1), time.min, LOCAL_TZ)
        return cls(start, end)


async def batches(
    db: Database, period: Period, department: str | None, size: int = BATCH
) -> AsyncIterator[Sequence[tuple[Application, Person | None]]]:
    """The period's applications, oldest id first, `size` at a time, with their applicants."""
    after = 0
    while True:
        query = (
            select(Application, Person)
            .join(Person, col(Application.person_id) == col(Person.id), isouter=True)
            .where(
                col(Application.created_at) >= period.start,
                col(Application.created_at) < period.end,
                col(Application.id) > after,
            )
            .order_by(col(Application.id))
            .limit(size)
        )
        if department is not None:
            query = query.where(col(Application.department) == department)
        async with db.transaction() as session:
            rows = [(app, person) for app, person in (await session.execute(query)).all()]
        if not rows:
            return
        yield rows
        after = rows[-1][0].id or after


def row(app: Application, person: Person | None, full: bool) -> list[str | datetime | None]:
    """One application as the export's cells: text, local times, or None for an empty cell."""

    def local(value: datetime | None) -> datetime | None:
        return as_utc(value).astimezone(LOCAL_TZ).replace(tzinfo=None) if value is not None else None

    phone = (lambda p: p) if full else mask_phone
    location = None
    if full and app.latitude is not None and app.longitude is not None:
        location = f"{app.latitude:.6f},{app.longitude:.6f}"
    applicant = None
    if person is not None:
        applicant = person.full_name if full else initials(person.full_name)
    email = (app.email if full else mask_email(app.email)) if app.email else None
    return [
        app.number,
        local(app.created_at),
        translate(Msg(f"status.{app.status}"), LANG),
        app.department,
        app.kind,
        account_label(app),
        app.region,
        app.address,
        translate(Msg(f"reason.{app.reason}"), LANG),
        app.description,
        app.result,
        app.assignee_name,
        local(app.taken_at),
        local(app.updated_at) if app.status in CLOSED else None,
        app.channel,
        applicant,
        phone(app.mobile),
        ", ".join(phone(p) for p in app.extra_phones) or None,
        email,
        location,
    ]


def _text(value: str | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d.%m.%Y %H:%M")
    return escaped(value)


async def write_csv(
    out: IO[str], db: Database, period: Period, department: str | None, full: bool, batch: int = BATCH
) -> int:
    """The CSV, with a byte-order mark so a spreadsheet reads the Azerbaijani letters; how many rows."""
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    async for rows in batches(db, period, department, batch):
        for app, person in rows:
            writer.writerow([_text(cell) for cell in row(app, person, full)])
            count += 1
    return count


async def write_xlsx(path: Path, db: Database, period: Period, department: str | None, full: bool) -> int:
    """The workbook, written as it is read (openpyxl's write-only mode): times are real times."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("applications")
    sheet.append(list(COLUMNS))
    count = 0
    async for rows in batches(db, period, department):
        for app, person in rows:
            cells: list[Any] = []
            for value in row(app, person, full):
                if isinstance(value, datetime):
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.number_format = "DD.MM.YYYY HH:MM"
                    cells.append(cell)
                elif isinstance(value, str):
                    cell = WriteOnlyCell(sheet, value=escaped(value))
                    cell.data_type = "s"  # text, never a formula, whatever it starts with
                    cells.append(cell)
                else:
                    cells.append(None)
            sheet.append(cells)
            count += 1
    book.save(path)
    return count
