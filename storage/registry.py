"""The registry of subscribers: its CSV import (all or nothing) and the look-ups the dialog needs.

The import streams, so that a national registry (1.5 M rows and more) fits in little memory: the file is
read a chunk at a time, and checked and staged a batch of rows at a time. A row is checked on its own,
then against the rows before it, which the import reads back from temporary staging tables (COPY on
PostgreSQL, executemany on SQLite). Only when the whole file is good is the registry written from the
staging tables, in a few set-based statements, all in the caller's one transaction.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import os
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import phonenumbers
from sqlalchemy import Row, bindparam, func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from storage.models import Account, MeteringPoint, Person

if TYPE_CHECKING:
    from _csv import Reader as CsvReader  # what csv.reader() returns; the csv module does not name it

HEADER = ("fin", "full_name", "phone", "kind", "code", "metering_point", "address", "region")
# May follow HEADER, in this order: a non-residential account's holder and its tax number. A file
# without them is as good; the import then leaves what is stored for them as it is.
OPTIONAL_HEADER = ("company", "voen")
HEADERS = tuple(
    HEADER + extra for n in range(len(OPTIONAL_HEADER) + 1) for extra in combinations(OPTIONAL_HEADER, n)
)
KINDS = ("residential", "non_residential")
SAMPLE_CSV = Path(__file__).with_name("sample_registry.csv")
MAX_ERRORS = 200
BATCH_ROWS = 10_000  # rows checked, looked up and staged at a time
_CHUNK_BYTES = 1 << 20  # read from the file at a time
# A refresh may set at most this share (percent) of the active accounts inactive: a cut-short export
# must not switch off everyone missing from it.
MAX_DEACTIVATE_PERCENT = 5.0
TEXT_COLUMNS = ("full_name", "address", "region", "company")  # free text; the others have strict formats
_TEXT_LIMITS = {"full_name": 200, "address": 300, "region": 100, "company": 200}  # characters
_OPTIONAL_TEXT = ("company",)  # may be empty

_FIN_RE = re.compile(r"^[0-9A-HJ-NP-Z]{7}$")
_CODE_RE = re.compile(r"^[0-9]{6,20}$")
_VOEN_RE = re.compile(r"^[0-9]{10}$")
_POINT_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z\-_/.]{0,39}$")
_FORMULA_SIGNS = ("=", "@", "+", "-")  # what a formula starts with
_MOBILE = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
# What a spreadsheet runs as a formula after a leading + or -. A bare sign, a number or plain words
# after it are left alone (a "-" placeholder); these are what makes it a formula.
_FORMULA_AFTER_SIGN = re.compile(
    r"""[\s+\-]*                                # more signs and spaces: --1+1, + -SUM(
    (?: [=@("'{]                               # another formula start, a bracket, a string, an array
      | [^\W\d][\w.]*\s*\(                     # a function call: SUM(, HYPERLINK (, СУММ(
      | [\w.]+\s*[|!]                          # DDE (cmd|'/C calc'!A0), a sheet reference (Sheet1!A1)
      | \$?[A-Za-z]{1,3}\$?[0-9]+(?![\w.])      # a cell reference: A1, $B$2
      | [0-9][0-9.,]*\s*[-+*/^&=<>%:]           # arithmetic: 1+1, 2*3, 1:2
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


class RegistryImportError(Exception):
    """The file was refused as a whole; `errors` names each bad line and why."""

    def __init__(self, errors: Sequence[LineError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _percent(value: Fraction | float, over: float | None = None, digits: int = 2) -> str:
    """60%, 4.65%: `digits` decimals, or more where a share would read as 0% or as no more than `over`."""
    for shown in range(digits, 10):
        text = f"{float(value):.{shown}f}".rstrip("0").rstrip(".")
        if (text != "0" or not value) and (over is None or float(text) > over):
            break
    return text + "%"


class TooManyDeactivations(RegistryImportError):
    """A well-formed file that would set more than the allowed share of the active accounts inactive."""

    def __init__(self, active: int, deactivating: int, max_percent: float) -> None:
        self.active, self.deactivating, self.max_percent = active, deactivating, max_percent
        self.share = Fraction(100 * deactivating, active)  # percent
        share, limit = _percent(self.share, over=max_percent), _percent(max_percent, digits=6)
        self.reason = (
            f"it would set {deactivating} of {active} active accounts inactive ({share}), "
            f"more than the limit of {limit}"
        )
        super().__init__([LineError(0, self.reason)])


def check_deactivation(active: int, deactivating: int, max_percent: float | None) -> None:
    """Refuse setting `deactivating` of `active` accounts inactive when that is over `max_percent` percent.

    None is no limit. An empty registry (nothing active) is never refused: there is nothing to lose.
    """
    if max_percent is None or deactivating == 0:
        return
    if Fraction(100 * deactivating) > Fraction(str(max_percent)) * active:
        raise TooManyDeactivations(active, deactivating, max_percent)


@dataclass(slots=True)
class ImportReport:
    """How many of each the file holds, and what the import added, changed and set inactive."""

    persons: int = 0
    accounts: int = 0
    metering_points: int = 0
    persons_added: int = 0
    persons_changed: int = 0
    accounts_added: int = 0
    accounts_changed: int = 0  # another owner, kind, address, region, company or VÖEN, or active again
    accounts_deactivated: int = 0
    metering_points_added: int = 0
    metering_points_changed: int = 0
    metering_points_deactivated: int = 0

    @property
    def deactivated(self) -> int:
        return self.accounts_deactivated + self.metering_points_deactivated


# --- one record ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Columns:
    """The columns a file's header names: HEADER, then some of OPTIONAL_HEADER, in that order."""

    names: tuple[str, ...]

    @property
    def has_company(self) -> bool:
        return "company" in self.names

    @property
    def has_voen(self) -> bool:
        return "voen" in self.names


@dataclass(slots=True)
class _Row:
    line: int
    fin: str
    full_name: str
    phone: str  # E.164, or "" when the file's phone is not a valid mobile (the row is then refused)
    kind: str
    code: str
    point: str
    address: str
    region: str
    company: str | None  # None: empty, or the file has no such column
    voen: str | None  # without spaces; None: empty, or the file has no such column

    @classmethod
    def read(cls, line: int, columns: _Columns, cells: Sequence[str]) -> _Row:
        """The row of one record's cleaned cells, named by the file's columns; not yet checked."""
        fin, full_name, phone, kind, code, point, address, region = cells[: len(HEADER)]
        extra = dict(zip(columns.names[len(HEADER) :], cells[len(HEADER) :], strict=True))
        voen = "".join(extra.get("voen", "").split())
        return cls(
            line,
            fin.upper(),
            full_name,
            _phone(phone) or "",
            kind.lower(),
            code,
            point,
            address,
            region,
            extra.get("company") or None,
            voen or None,
        )


def _clean(value: str | None) -> str:
    return unicodedata.normalize("NFC", (value or "").strip())


def _has_hidden(value: str) -> bool:
    """Control and format characters (bidi overrides, zero-width spaces) have no place in the registry."""
    if value.isprintable():  # most cells: a printable character is neither Cc nor Cf
        return False
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def _formula(value: str) -> str | None:
    """The start of a text cell that a spreadsheet would run as a formula, or None.

    `value` is already stripped, so a tab or carriage return before the sign is gone too.
    """
    if value[:1].isascii() and value[:1] not in _FORMULA_SIGNS:
        return None  # NFKC leaves a first ASCII character as it is, or composes it into a non-ASCII one
    head = unicodedata.normalize("NFKC", value[:64])  # a full-width ＝ is an = to some spreadsheets
    if head[:1] in ("=", "@"):
        return head[:1]
    if head[:1] in ("+", "-"):
        match = _FORMULA_AFTER_SIGN.match(head, 1)
        if match:
            return head[: min(match.end(), 24)]
    return None


@functools.lru_cache(maxsize=4096)  # a person's rows, and a family's, tend to stand together
def _phone(value: str) -> str | None:
    """The E.164 form of a valid Azerbaijani mobile number, or None."""
    if any(ch.isalpha() for ch in value):  # phonenumbers would read letters as keypad digits
        return None
    try:
        number = phonenumbers.parse(value, "AZ")
    except phonenumbers.NumberParseException:
        return None
    # Valid for AZ is "of a known type by AZ's patterns", the test number_type makes: one test, not two.
    if phonenumbers.region_code_for_number(number) != "AZ":
        return None
    if phonenumbers.number_type(number) not in _MOBILE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _check_record(line: int, raw: list[str], columns: _Columns) -> _Row | str:
    """The row of one record, or why it cannot be imported on its own."""
    if len(raw) != len(columns.names):
        return f"expected {len(columns.names)} fields, found {len(raw)}"
    cells = [_clean(c) for c in raw]
    if any(_has_hidden(c) for c in cells):
        return "control characters or invisible formatting in a field"
    row = _Row.read(line, columns, cells)
    problems = _field_problems(row)
    return "; ".join(problems) if problems else row


def _field_problems(row: _Row) -> list[str]:
    """What is wrong with the fields of one row on its own: the columns in header order, then formulas."""
    found = [
        None if _FIN_RE.fullmatch(row.fin) else "bad FİN: 7 characters of 0-9 and A-Z without I and O",
        _text_problem("full_name", row.full_name),
        None if row.phone else "bad phone: not a valid Azerbaijani mobile number",
        None if row.kind in KINDS else f"unknown kind {row.kind[:32]!r}: residential or non_residential",
        None if _CODE_RE.fullmatch(row.code) else "bad code: 6 to 20 digits",
        _point_kind_problem(row.kind, row.point),
        _point_problem(row.point),
        _text_problem("address", row.address),
        _text_problem("region", row.region),
        _text_problem("company", row.company or ""),
        None if not row.voen or _VOEN_RE.fullmatch(row.voen) else "bad VÖEN: 10 digits",
        _company_kind_problem(row.kind, row.company, row.voen),
    ]
    texts = (row.full_name, row.address, row.region, row.company or "")
    for column, value in zip(TEXT_COLUMNS, texts, strict=True):
        found.append(_formula_problem(column, value))
    return [reason for reason in found if reason is not None]


def _text_problem(column: str, value: str) -> str | None:
    """A free-text column must hold something (unless _OPTIONAL_TEXT), and no more than its limit."""
    limit = _TEXT_LIMITS[column]
    if column in _OPTIONAL_TEXT:
        return None if len(value) <= limit else f"{column} is longer than {limit} characters"
    if value and len(value) <= limit:
        return None
    return f"{column} is empty or longer than {limit} characters"


def _company_kind_problem(kind: str, company: str | None, voen: str | None) -> str | None:
    """A company and its VÖEN name the holder of a non-residential account; a person holds the others."""
    if kind == "residential" and (company or voen):
        return "a residential row has a company or VÖEN"
    return None


def _point_kind_problem(kind: str, point: str) -> str | None:
    """A residential account has no metering points; a non-residential row names one of its points."""
    if kind == "residential" and point:
        return "a residential row has a metering point"
    if kind == "non_residential" and not point:
        return "a non-residential row needs a metering point"
    return None


def _point_problem(point: str) -> str | None:
    if point and not _POINT_RE.fullmatch(point):
        return "bad metering point: up to 40 letters, digits, - _ / ."
    return None


def _formula_problem(column: str, value: str) -> str | None:
    start = _formula(value)
    if start is None:
        return None
    return f"{column} looks like a spreadsheet formula (it starts with {start!r})"


# --- rows against the rows before them ---------------------------------------------------------------


class _Holder(NamedTuple):
    """What the first good row of an account says of it: the account's other rows must agree."""

    line: int
    fin: str
    kind: str
    company: str | None
    voen: str | None


@dataclass(slots=True)
class _Staged:
    """The rows of one batch that go to the staging tables: what the file says for the first time."""

    persons: list[tuple[str, str, str, int]] = field(default_factory=list)  # fin, name, phone, line
    # code, line, fin, kind, address, region, company, voen: an account as the file has it
    accounts: list[tuple[str, int, str, str, str | None, str | None, str | None, str | None]] = field(
        default_factory=list
    )
    points: list[tuple[str, str, int, str, str]] = field(default_factory=list)  # code, point, line, where


@dataclass(slots=True)
class _Known:
    """What the good rows before a batch, and those of the batch so far, say of the batch's keys."""

    persons: dict[str, tuple[str, str]] = field(default_factory=dict)  # fin → (name, phone)
    accounts: dict[str, _Holder] = field(default_factory=dict)  # code → its first good row
    points: dict[tuple[str, str], int] = field(default_factory=dict)  # (code, point) → line

    def conflict(self, row: _Row) -> str | None:
        """Why a good row contradicts the good rows before it, or None."""
        known = self.persons.get(row.fin)
        if known and known != (row.full_name, row.phone):
            return f"FİN {row.fin[:2]}***** has another name or phone on an earlier line"
        first = self.accounts.get(row.code)
        return None if first is None else self._account_conflict(first, row)

    def _account_conflict(self, first: _Holder, row: _Row) -> str | None:
        """Why `row` cannot share its code with `first`: only a non-residential account has more rows,
        one for each of its metering points."""
        code, point = row.code, row.point
        if first.fin != row.fin:
            return f"duplicate code {code} with another owner (line {first.line})"
        if first.kind != row.kind:
            return f"code {code} is {first.kind} on line {first.line}"
        if row.kind == "residential":
            return f"duplicate subscriber code {code} (line {first.line})"
        if (first.company, first.voen) != (row.company, row.voen):
            return f"code {code} has another company or VÖEN on line {first.line}"
        if (code, point) in self.points:
            return f"duplicate metering point {point} of {code} (line {self.points[code, point]})"
        return None

    def accept(self, row: _Row, staged: _Staged) -> None:
        """Keep a good row: its person and its account when they are new, its metering point."""
        if row.fin not in self.persons:
            self.persons[row.fin] = (row.full_name, row.phone)
            staged.persons.append((row.fin, row.full_name, row.phone, row.line))
        if row.code not in self.accounts:
            self.accounts[row.code] = _Holder(row.line, row.fin, row.kind, row.company, row.voen)
            # A non-residential account's address and region are those of its metering points.
            where = (row.address, row.region) if row.kind == "residential" else (None, None)
            staged.accounts.append((row.code, row.line, row.fin, row.kind, *where, row.company, row.voen))
        if row.point:
            self.points[row.code, row.point] = row.line
            staged.points.append((row.code, row.point, row.line, row.address, row.region))


# --- reading the file as a stream ---------------------------------------------------------------------


class Readable(Protocol):
    """A binary file open for reading, or anything that reads like one."""

    def read(self, size: int, /) -> bytes: ...


Source = bytes | os.PathLike[str] | Readable  # the export itself, its path, or a file open on it


@contextmanager
def _opened(source: Source) -> Iterator[Callable[[int], bytes]]:
    """A function that reads the next bytes of `source`: the export itself, a path to it, or a binary file."""
    if isinstance(source, bytes):
        yield io.BytesIO(source).read
    elif isinstance(source, os.PathLike):
        with open(source, "rb") as file:
            yield file.read
    else:
        yield source.read


class _Utf8Lines:
    """The lines of a UTF-8 byte stream, read a chunk at a time and split as `io.StringIO(text,
    newline="")` splits a whole text: at \\n, \\r\\n and a lone \\r, which stay on the line. A byte that
    is not UTF-8 refuses the whole file, wherever it is, as if the file had been decoded first."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._chunk = _CHUNK_BYTES
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0  # the bytes decoded so far, after a byte order mark
        self._started = False
        self._ended = False
        self._lines = self._split()

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _text(self) -> str:
        """The next chunk, decoded; at the end of the stream "", and the stream counts as ended."""
        data = self._read(self._chunk)
        end = not data
        if not self._started:  # a byte order mark is dropped, and byte offsets count from after it
            self._started = True
            while 0 < len(data) < len(codecs.BOM_UTF8) and codecs.BOM_UTF8.startswith(data):
                more = self._read(self._chunk)
                if not more:
                    break
                data += more
            data = data.removeprefix(codecs.BOM_UTF8)
        pending = len(self._decoder.getstate()[0])  # the start of a character the last chunk cut off
        try:
            text = self._decoder.decode(data, final=end)
        except UnicodeDecodeError as exc:
            self._ended = True
            start = self._offset - pending + exc.start
            raise RegistryImportError([LineError(0, f"the file is not UTF-8 (byte {start})")]) from exc
        self._offset += len(data)
        self._ended = end
        return text

    def _split(self) -> Iterator[str]:
        carry = ""
        while not self._ended:
            lines = io.StringIO(carry + self._text(), newline="").readlines()
            # The last line may go on in the next chunk (a lone \r there may be the start of \r\n).
            carry = lines.pop() if lines and not self._ended and not lines[-1].endswith("\n") else ""
            yield from lines

    def drain(self) -> None:
        """Read the rest, only to refuse a file that is not UTF-8 further on."""
        while not self._ended:
            self._text()


class _Records:
    """The records of a file after its header, a batch at a time, each with the line it starts on."""

    def __init__(self, lines: _Utf8Lines) -> None:
        self._reader = csv.reader(lines)
        self.columns = _check_header(self._reader)
        self.ended = False
        self.unreadable: LineError | None = None  # the CSV could not be read on from here

    def batch(self, size: int) -> list[tuple[int, list[str]]]:
        """Up to `size` records that are not blank (a quoted field may span lines)."""
        reader, records = self._reader, list[tuple[int, list[str]]]()
        try:
            while len(records) < size:
                line = reader.line_num + 1
                raw = next(reader)
                if "".join(raw).strip():
                    records.append((line, raw))
        except StopIteration:
            self.ended = True
        except csv.Error as exc:
            self.ended = True
            self.unreadable = LineError(reader.line_num, f"unreadable CSV: {exc}")
        return records


def _check_header(reader: CsvReader) -> _Columns:
    """Read the first record and return the columns it names: one of HEADERS, in that order."""
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryImportError([LineError(0, "the file is empty")]) from None
    except csv.Error as exc:
        raise RegistryImportError([LineError(1, f"unreadable CSV: {exc}")]) from exc
    names = tuple(_clean(h).lower() for h in header)
    if names not in HEADERS:
        optional = " and/or ".join(OPTIONAL_HEADER)
        raise RegistryImportError(
            [LineError(1, f"the header must be: {','.join(HEADER)}, optionally followed by {optional}")]
        )
    return _Columns(names)


class _Problems:
    """The bad lines so far, in order. After MAX_ERRORS of them a last line says where reading stopped."""

    def __init__(self) -> None:
        self.errors: list[LineError] = []
        self.stopped = False

    @property
    def full(self) -> bool:
        return len(self.errors) >= MAX_ERRORS

    def note(self, line: int, reason: str | None) -> bool:
        """Note one record, good (None) or bad; False: there are enough problems, stop before it."""
        if self.full:
            stop = f"stopped after {MAX_ERRORS} problems; fix these and import again"
            self.errors.append(LineError(line, stop))
            self.stopped = True
            return False
        if reason is not None:
            self.errors.append(LineError(line, reason))
        return True


# --- the staging tables -------------------------------------------------------------------------------

# The file's persons, accounts and metering points, each as its first good row has it: the import reads
# them back to check the rows after them, then writes the registry from them in a few statements. They
# are temporary tables of the import's own transaction.
_STAGE_TABLES = {
    "registry_stage_person": (
        "fin TEXT PRIMARY KEY, full_name TEXT NOT NULL, phone TEXT NOT NULL, line INTEGER NOT NULL"
    ),
    "registry_stage_account": (
        "code TEXT PRIMARY KEY, line INTEGER NOT NULL, fin TEXT NOT NULL, kind TEXT NOT NULL, "
        "address TEXT, region TEXT, company TEXT, voen TEXT"
    ),
    "registry_stage_point": (
        "code TEXT NOT NULL, point TEXT NOT NULL, line INTEGER NOT NULL, address TEXT NOT NULL, "
        "region TEXT NOT NULL, PRIMARY KEY (code, point)"
    ),
}
_STAGE_COLUMNS = {
    "registry_stage_person": ("fin", "full_name", "phone", "line"),
    "registry_stage_account": ("code", "line", "fin", "kind", "address", "region", "company", "voen"),
    "registry_stage_point": ("code", "point", "line", "address", "region"),
}


class _Stage(ABC):
    """The staging tables on one database: made, filled a batch at a time, read back, dropped."""

    create_table = "CREATE TEMPORARY TABLE {table} ({columns})"
    temporary_schema = "temp"  # where the temporary tables are, so that a DROP touches no other table
    settings: tuple[str, ...] = ()  # statements that tune the import's transaction

    def __init__(self, session: AsyncSession, driver: Any) -> None:
        self.session = session
        self.driver = driver  # the connection of the database's own driver, in the session's transaction
        self.persons = self.accounts = self.points = 0  # rows staged

    @staticmethod
    async def open(session: AsyncSession) -> _Stage:
        connection = await session.connection()
        stage: _Stage
        if connection.dialect.name == "postgresql":
            stage = _PostgresStage(session, (await connection.get_raw_connection()).driver_connection)
        elif connection.dialect.name == "sqlite":
            stage = _SqliteStage(session, (await connection.get_raw_connection()).driver_connection)
        else:
            raise NotImplementedError(f"registry import on {connection.dialect.name}")
        # Through the session, so that its transaction has begun before the driver is used directly.
        for statement in stage.settings:
            await connection.execute(text(statement))
        await stage.drop()  # tables of an import refused earlier in this transaction
        for table, columns in _STAGE_TABLES.items():
            await connection.execute(text(stage.create_table.format(table=table, columns=columns)))
        return stage

    async def drop(self) -> None:
        connection = await self.session.connection()
        for table in _STAGE_TABLES:
            await connection.execute(text(f"DROP TABLE IF EXISTS {self.temporary_schema}.{table}"))

    async def add(self, staged: _Staged) -> None:
        tables: dict[str, list[Any]] = {
            "registry_stage_person": staged.persons,
            "registry_stage_account": staged.accounts,
            "registry_stage_point": staged.points,
        }
        for table, rows in tables.items():
            if rows:
                await self._insert(table, rows)
        self.persons += len(staged.persons)
        self.accounts += len(staged.accounts)
        self.points += len(staged.points)

    async def known(self, rows: Sequence[_Row]) -> _Known:
        """What the rows staged before say of the persons, accounts and metering points of `rows`."""
        known = _Known()
        if not self.persons:
            return known  # nothing staged yet
        for fin, name, phone in await self._persons(list({row.fin for row in rows})):
            known.persons[fin] = (name, phone)
        for code, *holder in await self._accounts(list({row.code for row in rows})):
            known.accounts[code] = _Holder(*holder)
        # A metering point was staged with its account: only a staged account can have one already.
        pairs = list({(row.code, row.point) for row in rows if row.point and row.code in known.accounts})
        if pairs:
            for code, point, line in await self._points(pairs):
                known.points[code, point] = line
        return known

    @abstractmethod
    async def ready(self) -> None:
        """Everything is staged: what the statements that write the registry need done first."""

    @abstractmethod
    async def _insert(self, table: str, rows: list[Any]) -> None:
        """Add rows to one of the staging tables."""

    @abstractmethod
    async def _persons(self, fins: list[str]) -> Sequence[Sequence[Any]]:
        """The staged persons of these FİNs: fin, full_name, phone."""

    @abstractmethod
    async def _accounts(self, codes: list[str]) -> Sequence[Sequence[Any]]:
        """The staged accounts of these codes: code, line, fin, kind, company, voen."""

    @abstractmethod
    async def _points(self, pairs: list[tuple[str, str]]) -> Sequence[Sequence[Any]]:
        """The staged metering points of these (code, point) pairs: code, point, line."""


class _PostgresStage(_Stage):
    """asyncpg: batches go in by COPY, the keys of a batch are looked up as arrays."""

    create_table = "CREATE TEMPORARY TABLE {table} ({columns}) ON COMMIT DROP"
    temporary_schema = "pg_temp"
    # The joins that write a national registry hash in memory rather than in temporary files. The
    # server's memory, for this transaction only.
    settings = ("SET LOCAL work_mem = '64MB'",)

    async def _insert(self, table: str, rows: list[Any]) -> None:
        await self.driver.copy_records_to_table(table, records=rows, columns=_STAGE_COLUMNS[table])

    async def _persons(self, fins: list[str]) -> Sequence[Sequence[Any]]:
        sql = "SELECT fin, full_name, phone FROM registry_stage_person WHERE fin = ANY($1::text[])"
        return await self.driver.fetch(sql, fins)

    async def _accounts(self, codes: list[str]) -> Sequence[Sequence[Any]]:
        sql = (
            "SELECT code, line, fin, kind, company, voen FROM registry_stage_account "
            "WHERE code = ANY($1::text[])"
        )
        return await self.driver.fetch(sql, codes)

    async def _points(self, pairs: list[tuple[str, str]]) -> Sequence[Sequence[Any]]:
        sql = (
            "SELECT s.code, s.point, s.line FROM registry_stage_point AS s "
            "JOIN unnest($1::text[], $2::text[]) AS k (code, point) ON s.code = k.code AND s.point = k.point"
        )
        codes, points = zip(*pairs, strict=True)
        return await self.driver.fetch(sql, codes, points)

    async def ready(self) -> None:
        # Temporary tables get no statistics of their own; the joins that follow need them.
        await self.driver.execute("ANALYZE " + ", ".join(_STAGE_TABLES))


class _SqliteStage(_Stage):
    """aiosqlite: batches go in by executemany, the keys of a batch are looked up as a JSON array."""

    create_table = "CREATE TEMPORARY TABLE {table} ({columns}) WITHOUT ROWID"

    async def _insert(self, table: str, rows: list[Any]) -> None:
        columns = _STAGE_COLUMNS[table]
        values = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"  # noqa: S608 - our own names
        await self.driver.executemany(sql, rows)

    async def _persons(self, fins: list[str]) -> Sequence[Sequence[Any]]:
        sql = (
            "SELECT fin, full_name, phone FROM registry_stage_person "
            "WHERE fin IN (SELECT value FROM json_each(?))"
        )
        return await self.driver.execute_fetchall(sql, (json.dumps(fins),))

    async def _accounts(self, codes: list[str]) -> Sequence[Sequence[Any]]:
        sql = (
            "SELECT code, line, fin, kind, company, voen FROM registry_stage_account "
            "WHERE code IN (SELECT value FROM json_each(?))"
        )
        return await self.driver.execute_fetchall(sql, (json.dumps(codes),))

    async def _points(self, pairs: list[tuple[str, str]]) -> Sequence[Sequence[Any]]:
        sql = (
            "SELECT s.code, s.point, s.line FROM json_each(?) AS k JOIN registry_stage_point AS s "
            "ON s.code = json_extract(k.value, '$[0]') AND s.point = json_extract(k.value, '$[1]')"
        )
        return await self.driver.execute_fetchall(sql, (json.dumps(pairs),))

    async def ready(self) -> None:
        """Nothing: SQLite plans the joins from the tables' keys."""


async def _stage_file(lines: _Utf8Lines, stage: _Stage, batch_rows: int) -> _Columns:
    """Check every record of the file and stage its good rows, a batch at a time; raise with every
    problem (reading stops after MAX_ERRORS), or return the file's columns."""
    try:
        records = _Records(lines)
    except RegistryImportError:
        lines.drain()  # a file that is not UTF-8 is refused as that, whatever its header
        raise
    problems = _Problems()
    while not records.ended and not problems.stopped:
        batch = records.batch(1 if problems.full else batch_rows)
        checked = [(line, _check_record(line, raw, records.columns)) for line, raw in batch]
        rows = [outcome for _, outcome in checked if isinstance(outcome, _Row)]
        known = await stage.known(rows) if rows else _Known()
        staged, conflicts = _Staged(), {}
        for row in rows:
            conflict = known.conflict(row)
            if conflict is None:
                known.accept(row, staged)
            else:
                conflicts[row.line] = conflict
        await stage.add(staged)
        for line, outcome in checked:
            if not problems.note(line, outcome if isinstance(outcome, str) else conflicts.get(line)):
                break
    if records.unreadable is not None and not problems.stopped:
        problems.errors.append(records.unreadable)
    lines.drain()
    if problems.errors:
        raise RegistryImportError(problems.errors)
    if not stage.accounts:
        raise RegistryImportError([LineError(0, "the file has no rows")])
    return records.columns


# --- writing the registry from the staging tables ---------------------------------------------------------

_COUNT_ACTIVE = "SELECT count(*) FROM account WHERE active"
_COUNT_STALE = (
    "SELECT count(*) FROM account AS a WHERE a.active "
    "AND NOT EXISTS (SELECT 1 FROM registry_stage_account AS s WHERE s.code = a.code)"
)
_UPDATE_PERSONS = """
UPDATE person SET full_name = s.full_name, phone = s.phone
FROM registry_stage_person AS s
WHERE person.fin = s.fin AND (person.full_name <> s.full_name OR person.phone <> s.phone)
"""
_INSERT_PERSONS = """
INSERT INTO person (fin, full_name, phone)
SELECT s.fin, s.full_name, s.phone FROM registry_stage_person AS s
WHERE NOT EXISTS (SELECT 1 FROM person AS p WHERE p.fin = s.fin)
ORDER BY s.line
"""
_DEACTIVATE_ACCOUNTS = """
UPDATE account SET active = FALSE
WHERE active AND NOT EXISTS (SELECT 1 FROM registry_stage_account AS s WHERE s.code = account.code)
"""
# {company} and {voen}: what the account gets, {differs}: the dialect's null-safe "not equal".
_UPDATE_ACCOUNTS = """
UPDATE account AS a
SET kind = s.kind, person_id = p.id, address = s.address, region = s.region,
    company = {company}, voen = {voen}, active = TRUE
FROM registry_stage_account AS s JOIN person AS p ON p.fin = s.fin
WHERE a.code = s.code AND (
    a.kind <> s.kind OR a.person_id <> p.id OR a.address {differs} s.address
    OR a.region {differs} s.region OR a.company {differs} {company} OR a.voen {differs} {voen}
    OR NOT a.active
)
"""
_INSERT_ACCOUNTS = """
INSERT INTO account (code, kind, person_id, address, region, company, voen, active)
SELECT s.code, s.kind, p.id, s.address, s.region, s.company, s.voen, TRUE
FROM registry_stage_account AS s JOIN person AS p ON p.fin = s.fin
WHERE NOT EXISTS (SELECT 1 FROM account AS a WHERE a.code = s.code)
ORDER BY s.line
"""
_UPDATE_POINTS = """
UPDATE metering_point AS m SET address = s.address, region = s.region, active = TRUE
FROM registry_stage_point AS s JOIN account AS a ON a.code = s.code
WHERE m.account_id = a.id AND m.code = s.point
    AND (m.address <> s.address OR m.region <> s.region OR NOT m.active)
"""
_INSERT_POINTS = """
INSERT INTO metering_point (account_id, code, address, region, active)
SELECT a.id, s.point, s.address, s.region, TRUE
FROM registry_stage_point AS s JOIN account AS a ON a.code = s.code
WHERE NOT EXISTS (SELECT 1 FROM metering_point AS m WHERE m.account_id = a.id AND m.code = s.point)
ORDER BY s.line
"""
_DEACTIVATE_POINTS = """
UPDATE metering_point SET active = FALSE
WHERE active AND NOT EXISTS (
    SELECT 1 FROM registry_stage_point AS s JOIN account AS a ON a.code = s.code
    WHERE a.id = metering_point.account_id AND s.point = metering_point.code
)
"""


def _holder_column(name: str, in_file: bool) -> str:
    """What an account's company or VÖEN becomes: the file's (empty is NULL), or, when the file has no
    such column, what is stored; a residential account has none."""
    if in_file:
        return f"s.{name}"
    return f"CASE WHEN s.kind = 'residential' THEN NULL ELSE a.{name} END"


async def _write(
    session: AsyncSession, stage: _Stage, columns: _Columns, max_deactivate: float | None
) -> ImportReport:
    """Refuse too many deactivations, or write the staged registry: add, change, set inactive."""
    connection = await session.connection()

    async def run(sql: str) -> int:
        return (await connection.execute(text(sql))).rowcount

    active = (await connection.execute(text(_COUNT_ACTIVE))).scalar_one()
    stale = (await connection.execute(text(_COUNT_STALE))).scalar_one()
    check_deactivation(active, stale, max_deactivate)

    report = ImportReport(persons=stage.persons, accounts=stage.accounts, metering_points=stage.points)
    report.persons_changed = await run(_UPDATE_PERSONS)
    report.persons_added = await run(_INSERT_PERSONS)
    report.accounts_deactivated = await run(_DEACTIVATE_ACCOUNTS)
    differs = "IS DISTINCT FROM" if connection.dialect.name == "postgresql" else "IS NOT"
    company, voen = _holder_column("company", columns.has_company), _holder_column("voen", columns.has_voen)
    report.accounts_changed = await run(_UPDATE_ACCOUNTS.format(company=company, voen=voen, differs=differs))
    report.accounts_added = await run(_INSERT_ACCOUNTS)
    report.metering_points_changed = await run(_UPDATE_POINTS)
    report.metering_points_added = await run(_INSERT_POINTS)
    report.metering_points_deactivated = await run(_DEACTIVATE_POINTS)
    return report


async def import_csv(
    session: AsyncSession,
    source: Source,
    *,
    max_deactivate: float | None = MAX_DEACTIVATE_PERCENT,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Load or refresh the registry inside the caller's transaction; accounts not in the file go inactive.

    `source` is the export: its bytes, its path, or a binary file open on it. It is read as a stream and
    checked `batch_rows` rows at a time; the good rows go to temporary staging tables of the transaction,
    and the registry is written from them at the end, only when the whole file is good (else
    `RegistryImportError` names each bad line and the registry is as it was). Applications keep their own
    snapshot of the account, so nothing is deleted. A refresh that would set more than `max_deactivate`
    percent of the active accounts inactive raises `TooManyDeactivations` before anything is written
    (None: no limit). The registry's rows are written with SQL, not through the ORM: objects the session
    already holds are not refreshed.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be 1 or more, not {batch_rows}")
    await session.flush()
    with _opened(source) as read:
        stage = await _Stage.open(session)
        try:
            columns = await _stage_file(_Utf8Lines(read), stage, batch_rows)
            await stage.ready()
            report = await _write(session, stage, columns, max_deactivate)
        except RegistryImportError:
            await stage.drop()  # the transaction is sound: the caller may go on with it
            raise
        await stage.drop()
    return report


async def is_empty(session: AsyncSession) -> bool:
    return (await session.scalar(select(func.count()).select_from(Account))) == 0


# The look-ups below run for most updates: built once, they return plain rows, not ORM objects.
_PERSON = Person.__table__  # type: ignore[attr-defined]
_ACCOUNT = Account.__table__  # type: ignore[attr-defined]
_POINT = MeteringPoint.__table__  # type: ignore[attr-defined]
_PERSONS_BY_PHONE = (
    select(_PERSON)
    .where(
        _PERSON.c.phone == bindparam("phone"),
        _PERSON.c.id.in_(select(_ACCOUNT.c.person_id).where(_ACCOUNT.c.active)),
    )
    .order_by(_PERSON.c.full_name)
)
_ACCOUNTS_BY_PHONE = (
    select(_ACCOUNT)
    .join(_PERSON)
    .where(_PERSON.c.phone == bindparam("phone"), _ACCOUNT.c.active)
    .order_by(_ACCOUNT.c.kind.desc(), _ACCOUNT.c.code)  # descending: residential before non_residential
)
_PHONE_FOR_CODE = (
    select(_PERSON.c.phone).join(_ACCOUNT).where(_ACCOUNT.c.code == bindparam("code"), _ACCOUNT.c.active)
)
_METERING_POINTS = (
    select(_POINT)
    .where(_POINT.c.account_id == bindparam("account_id"), _POINT.c.active)
    .order_by(_POINT.c.code)
)


async def persons_by_phone(session: AsyncSession, phone: str) -> Sequence[Row[Any]]:
    """The people on file with this phone (a family may share one) who have an active account."""
    return (await session.execute(_PERSONS_BY_PHONE, {"phone": phone})).all()


async def accounts_by_phone(session: AsyncSession, phone: str) -> Sequence[Row[Any]]:
    """Active accounts whose owner's phone on file is `phone`: residential first, then by code."""
    return (await session.execute(_ACCOUNTS_BY_PHONE, {"phone": phone})).all()


async def phone_for_code(session: AsyncSession, code: str) -> str | None:
    phone: str | None = (await session.execute(_PHONE_FOR_CODE, {"code": code})).scalar()
    return phone


async def metering_points(session: AsyncSession, account_id: int) -> Sequence[Row[Any]]:
    return (await session.execute(_METERING_POINTS, {"account_id": account_id})).all()
