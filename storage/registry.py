"""The registry of subscribers: its CSV import (all or nothing) and the look-ups the dialog needs."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import Row, bindparam, func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

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
    company: str | None  # None: the file has no such column
    voen: str | None  # without spaces; None: the file has no such column

    @classmethod
    def read(cls, line: int, columns: Sequence[str], cells: Sequence[str]) -> _Row:
        """The row of one record's cleaned cells, named by the file's columns; not yet checked."""
        cell = dict(zip(columns, cells, strict=True))
        voen = cell.get("voen")
        return cls(
            line,
            cell["fin"].upper(),
            cell["full_name"],
            _phone(cell["phone"]) or "",
            cell["kind"].lower(),
            cell["code"],
            cell["metering_point"],
            cell["address"],
            cell["region"],
            cell.get("company"),
            None if voen is None else "".join(voen.split()),
        )


@dataclass(slots=True)
class _Parsed:
    persons: dict[str, tuple[str, str]] = field(default_factory=dict)  # fin → (name, phone)
    accounts: dict[str, _Row] = field(default_factory=dict)  # code → first row
    points: dict[tuple[str, str], _Row] = field(default_factory=dict)

    def conflict(self, row: _Row) -> str | None:
        """Why a good row contradicts the rows read before it, or None."""
        known = self.persons.get(row.fin)
        if known and known != (row.full_name, row.phone):
            return f"FİN {row.fin[:2]}***** has another name or phone on an earlier line"
        first = self.accounts.get(row.code)
        return None if first is None else self._account_conflict(first, row)

    def _account_conflict(self, first: _Row, row: _Row) -> str | None:
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
            return f"duplicate metering point {point} of {code} (line {self.points[code, point].line})"
        return None

    def add(self, row: _Row) -> None:
        """Keep a good row: its person, its account (the first row of a code holds it), its point."""
        self.persons[row.fin] = (row.full_name, row.phone)
        self.accounts.setdefault(row.code, row)
        if row.point:
            self.points[row.code, row.point] = row


def _clean(value: str | None) -> str:
    return unicodedata.normalize("NFC", (value or "").strip())


def _has_hidden(value: str) -> bool:
    """Control and format characters (bidi overrides, zero-width spaces) have no place in the registry."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def _formula(value: str) -> str | None:
    """The start of a text cell that a spreadsheet would run as a formula, or None.

    `value` is already stripped, so a tab or carriage return before the sign is gone too.
    """
    head = unicodedata.normalize("NFKC", value[:64])  # a full-width ＝ is an = to some spreadsheets
    if head[:1] in ("=", "@"):
        return head[:1]
    if head[:1] in ("+", "-"):
        match = _FORMULA_AFTER_SIGN.match(head, 1)
        if match:
            return head[: min(match.end(), 24)]
    return None


def _phone(value: str) -> str | None:
    if any(ch.isalpha() for ch in value):  # phonenumbers would read letters as keypad digits
        return None
    try:
        number = phonenumbers.parse(value, "AZ")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != "AZ":
        return None
    if phonenumbers.number_type(number) not in _MOBILE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_csv(data: bytes) -> _Parsed:
    """Check every line of an export; raise with all the reasons, or return the rows grouped."""
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    columns = _check_header(reader)
    parsed = _Parsed()
    errors = _read_records(reader, columns, parsed)
    if errors:
        raise RegistryImportError(errors)
    if not parsed.accounts:
        raise RegistryImportError([LineError(0, "the file has no rows")])
    return parsed


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryImportError([LineError(0, f"the file is not UTF-8 (byte {exc.start})")]) from exc


def _check_header(reader: CsvReader) -> tuple[str, ...]:
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
    return names


def _read_records(reader: CsvReader, columns: Sequence[str], parsed: _Parsed) -> list[LineError]:
    """Add every good record after the header to `parsed`; return the problems of the others.

    Reading stops after MAX_ERRORS problems (a last line says so), and at CSV that cannot be read.
    """
    errors: list[LineError] = []
    try:
        for line, raw in _records(reader):
            if len(errors) >= MAX_ERRORS:
                errors.append(
                    LineError(line, f"stopped after {MAX_ERRORS} problems; fix these and import again")
                )
                break
            reason = _read_record(line, raw, columns, parsed)
            if reason is not None:
                errors.append(LineError(line, reason))
    except csv.Error as exc:
        errors.append(LineError(reader.line_num, f"unreadable CSV: {exc}"))
    return errors


def _records(reader: CsvReader) -> Iterator[tuple[int, list[str]]]:
    """Each record that is not blank, with the line it starts on (a quoted field may span lines)."""
    while True:
        line = reader.line_num + 1
        try:
            raw = next(reader)
        except StopIteration:
            return
        if any(cell.strip() for cell in raw):
            yield line, raw


def _read_record(line: int, raw: list[str], columns: Sequence[str], parsed: _Parsed) -> str | None:
    """Add one record to `parsed`, or say why it cannot be imported."""
    if len(raw) != len(columns):
        return f"expected {len(columns)} fields, found {len(raw)}"
    cells = [_clean(c) for c in raw]
    if any(_has_hidden(c) for c in cells):
        return "control characters or invisible formatting in a field"
    row = _Row.read(line, columns, cells)
    problems = _field_problems(row)
    if problems:
        return "; ".join(problems)
    conflict = parsed.conflict(row)
    if conflict is None:
        parsed.add(row)
    return conflict


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


async def import_csv(
    session: AsyncSession, data: bytes, *, max_deactivate: float | None = MAX_DEACTIVATE_PERCENT
) -> ImportReport:
    """Load or refresh the registry inside the caller's transaction; accounts not in the file go inactive.

    Applications keep their own snapshot of the account, so nothing is deleted. A refresh that would set
    more than `max_deactivate` percent of the active accounts inactive raises `TooManyDeactivations`
    before anything is written (None: no limit).
    """
    parsed = parse_csv(data)
    report = ImportReport()

    accounts = {a.code: a for a in (await session.scalars(select(Account))).all()}
    stale_accounts = [a.id for code, a in accounts.items() if code not in parsed.accounts and a.active]
    check_deactivation(sum(a.active for a in accounts.values()), len(stale_accounts), max_deactivate)

    persons = await _import_persons(session, parsed, report)
    await _import_accounts(session, parsed, persons, accounts, report)
    stale_points = await _import_points(session, parsed, accounts, report)
    if stale_accounts:
        await session.execute(update(Account).where(col(Account.id).in_(stale_accounts)).values(active=False))
    if stale_points:
        await session.execute(
            update(MeteringPoint).where(col(MeteringPoint.id).in_(stale_points)).values(active=False)
        )
    report.accounts_deactivated, report.metering_points_deactivated = len(stale_accounts), len(stale_points)
    await session.flush()
    return report


async def _import_persons(session: AsyncSession, parsed: _Parsed, report: ImportReport) -> dict[str, Person]:
    """Add or update everyone in the file; return every person on file by FİN, with their ids."""
    persons = {p.fin: p for p in (await session.scalars(select(Person))).all()}
    for fin, (name, phone) in parsed.persons.items():
        person = persons.get(fin)
        if person is None:
            person = Person(fin=fin, full_name=name, phone=phone)
            session.add(person)
            persons[fin] = person
            report.persons_added += 1
        elif (person.full_name, person.phone) != (name, phone):
            person.full_name, person.phone = name, phone
            report.persons_changed += 1
        report.persons += 1
    await session.flush()
    return persons


async def _import_accounts(
    session: AsyncSession,
    parsed: _Parsed,
    persons: dict[str, Person],
    accounts: dict[str, Account],
    report: ImportReport,
) -> None:
    """Add or update every account in the file, active; the new ones go into `accounts`, with their ids."""
    for code, row in parsed.accounts.items():
        person_id = persons[row.fin].id
        assert person_id is not None
        account = accounts.get(code)
        values = _account_values(row, person_id, account)
        if account is None:
            account = Account(code=code, kind=row.kind, person_id=person_id)
            session.add(account)
            accounts[code] = account
            report.accounts_added += 1
        elif any(getattr(account, name) != value for name, value in values.items()):
            report.accounts_changed += 1
        for name, value in values.items():
            setattr(account, name, value)
        report.accounts += 1
    await session.flush()


def _account_values(row: _Row, person_id: int, stored: Account | None) -> dict[str, object]:
    """The columns of an account as the file has it, active.

    A non-residential account's address and region are those of its metering points; a residential one
    has no company. A column the file does not have keeps what is stored.
    """
    residential = row.kind == "residential"
    return {
        "kind": row.kind,
        "person_id": person_id,
        "address": row.address if residential else None,
        "region": row.region if residential else None,
        "company": None if residential else _optional(row.company, stored.company if stored else None),
        "voen": None if residential else _optional(row.voen, stored.voen if stored else None),
        "active": True,
    }


def _optional(value: str | None, stored: str | None) -> str | None:
    """What an optional column sets: its value, None when it is empty, `stored` when the file lacks it."""
    if value is None:
        return stored
    return value or None


async def _import_points(
    session: AsyncSession, parsed: _Parsed, accounts: dict[str, Account], report: ImportReport
) -> list[int | None]:
    """Add or update every metering point in the file, active; return the ids of the active ones not in it."""
    points = {
        (account_code, p.code): p
        for p, account_code in (await session.execute(select(MeteringPoint, Account.code).join(Account)))
    }
    for (code, point_code), row in parsed.points.items():
        point = points.get((code, point_code))
        if point is None:
            account_id = accounts[code].id
            assert account_id is not None
            session.add(
                MeteringPoint(account_id=account_id, code=point_code, address=row.address, region=row.region)
            )
            report.metering_points_added += 1
        else:
            if (point.address, point.region, point.active) != (row.address, row.region, True):
                report.metering_points_changed += 1
            point.address, point.region, point.active = row.address, row.region, True
        report.metering_points += 1
    return [p.id for key, p in points.items() if key not in parsed.points and p.active]


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
