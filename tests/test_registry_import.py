"""The registry CSV import: good files load, bad files change nothing and name each bad line and why.

Every database test runs on SQLite and on PostgreSQL (the `db` fixture).
"""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import SQLModel, col, select

from bot.core.service import RegistryAdapter
from storage import registry
from storage.db import Database
from storage.models import Account, MeteringPoint, Person
from storage.registry import ImportReport, LineError, RegistryImportError, TooManyDeactivations
from tests.processes import isiqbot_env, run_isiqbot

HEADER = ",".join(registry.HEADER)
COLUMNS = registry.HEADER
FULL_COLUMNS = registry.HEADER + registry.OPTIONAL_HEADER  # with company and voen
FULL_HEADER = ",".join(FULL_COLUMNS)

# Fake people with realistic Azerbaijani data (FİN: 7 of [0-9A-HJ-NP-Z]; mobile +994 50/51/55/70/77/99/10).
AYGUN = {
    "fin": "AZ4K7P2",
    "full_name": "Həsənova Aygün Rauf qızı",
    "phone": "+994501234567",
    "kind": "residential",
    "code": "100200300400500",
    "metering_point": "",
    "address": "Bakı şəhəri, Nəsimi rayonu, Füzuli küçəsi 12, mənzil 7",
    "region": "Nəsimi",
}
AYGUN_2 = AYGUN | {"code": "100200300400501", "address": "Bakı şəhəri, Nəsimi rayonu, Azadlıq prospekti 81"}
ELVIN_SHOP_1 = {
    "fin": "5RT8JKL",
    "full_name": "Babayev Elvin Samir oğlu",
    "phone": "+994552345678",
    "kind": "non_residential",
    "code": "2233445566",
    "metering_point": "MN-01",
    "address": "Sumqayıt şəhəri, Sülh küçəsi 40, mağaza",
    "region": "Sumqayıt",
}
ELVIN_SHOP_2 = ELVIN_SHOP_1 | {
    "metering_point": "MN-02",
    "address": "Sumqayıt şəhəri, 9-cu mikrorayon, anbar 2",
}
RAMIL = {
    "fin": "9XB3C7D",
    "full_name": "Quliyev Ramil Tofiq oğlu",
    "phone": "+994703456789",
    "kind": "residential",
    "code": "300400500600700",
    "metering_point": "",
    "address": "Gəncə şəhəri, Atatürk prospekti 18, mənzil 22",
    "region": "Gəncə",
}
NIGAR = {
    "fin": "7TRW2HJ",
    "full_name": "Əliyeva Nigar Vaqif qızı",
    "phone": "+994774567890",
    "kind": "residential",
    "code": "400500600700800",
    "metering_point": "",
    "address": "Şəki şəhəri, M.Ə.Rəsulzadə küçəsi 8",
    "region": "Şəki",
}
BASE = [AYGUN, AYGUN_2, ELVIN_SHOP_1, ELVIN_SHOP_2, RAMIL]


def row(base: dict[str, str], **changes: str) -> dict[str, str]:
    return base | changes


def line(values: dict[str, str], columns: Sequence[str] = COLUMNS) -> str:
    """One CSV line (no line end), quoted as a spreadsheet would; an optional column missing is empty."""
    out = io.StringIO()
    # With a real line end the writer quotes a field that holds a CR or LF; the line end is cut off after.
    cells = [values[c] if c in registry.HEADER else values.get(c, "") for c in columns]
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue().removesuffix("\r\n")


def make_csv(*rows: dict[str, str] | str, header: str = HEADER, end: str = "\n") -> bytes:
    """A UTF-8 file: the header, then each row (a dict, or a raw line given as text)."""
    lines = [header, *(r if isinstance(r, str) else line(r) for r in rows)]
    return "".join(text + end for text in lines).encode("utf-8")


def make_full_csv(*rows: dict[str, str]) -> bytes:
    """A file with the optional columns company and voen too."""
    return make_csv(*(line(r, FULL_COLUMNS) for r in rows), header=FULL_HEADER)


async def load(
    db: Database,
    data: registry.Source,
    max_deactivate: float | None = registry.MAX_DEACTIVATE_PERCENT,
    batch_rows: int = registry.BATCH_ROWS,
) -> ImportReport:
    async with db.transaction() as session:
        return await registry.import_csv(session, data, max_deactivate=max_deactivate, batch_rows=batch_rows)


async def refused(
    db: Database, data: registry.Source, batch_rows: int = registry.BATCH_ROWS
) -> list[LineError]:
    with pytest.raises(RegistryImportError) as caught:
        await load(db, data, batch_rows=batch_rows)
    assert not isinstance(caught.value, TooManyDeactivations), caught.value
    assert caught.value.errors, "a refused file must say why"
    return caught.value.errors


async def counts(db: Database) -> tuple[int, int, int]:
    """How many persons, accounts and metering points there are."""
    async with db.transaction() as session:
        persons, accounts, points = [
            int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (Person, Account, MeteringPoint)
        ]
    return persons, accounts, points


def _rows(items: list[SQLModel]) -> list[tuple[object, ...]]:
    dumps = sorted((item.model_dump() for item in items), key=lambda d: d["id"])
    return [tuple(sorted(d.items())) for d in dumps]


async def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every column of every registry row, to compare a database before and after."""
    async with db.transaction() as session:
        return {
            table.__name__: _rows(list((await session.scalars(select(table))).all()))
            for table in (Person, Account, MeteringPoint)
        }


async def account(db: Database, code: str) -> Account:
    async with db.transaction() as session:
        return (await session.scalars(select(Account).where(Account.code == code))).one()


async def person(db: Database, fin: str) -> Person:
    async with db.transaction() as session:
        return (await session.scalars(select(Person).where(Person.fin == fin))).one()


# --- the sample file --------------------------------------------------------------------------------


async def test_sample_file_imports(db: Database) -> None:
    report = await load(db, registry.SAMPLE_CSV.read_bytes())
    # 62 rows: 25 people, 37 subscriber codes and 6 main codes with 25 metering points between them.
    assert (report.persons, report.accounts, report.metering_points, report.deactivated) == (25, 43, 25, 0)
    assert await counts(db) == (25, 43, 25)

    async with db.transaction() as session:
        kinds = dict((await session.execute(select(Account.kind, func.count()).group_by(Account.kind))).all())
        assert kinds == {"residential": 37, "non_residential": 6}
        assert (await session.scalar(select(func.count()).where(Account.active))) == 43


async def test_sample_lookups(sample_db: Database) -> None:
    async with sample_db.transaction() as session:
        # The person with two residential accounts and one main code: residential first, then by code.
        accounts = await registry.accounts_by_phone(session, "+994998406430")
        assert [(a.kind, a.code) for a in accounts] == [
            ("residential", "842246029105241"),
            ("residential", "957554532695294"),
            ("non_residential", "1756136644"),
        ]
        assert accounts[0].address == "Gəncə şəhəri, Atatürk prospekti 18, mənzil 22"
        assert accounts[0].region == "Gəncə"
        assert accounts[2].address is None  # a main code's addresses live on its metering points
        assert (accounts[2].company, accounts[2].voen) == ("Günəş Çörək MMC", "1700482351")
        assert (accounts[0].company, accounts[0].voen) == (None, None)  # a person holds a residential one

        people = await registry.persons_by_phone(session, "+994998406430")
        assert [(p.fin, p.full_name) for p in people] == [("136UB12", "Məmmədova Səbinə Fikrət qızı")]

        assert await registry.phone_for_code(session, "5412017015") == "+994778604692"
        assert await registry.phone_for_code(session, "957554532695294") == "+994998406430"
        assert await registry.phone_for_code(session, "999999999999999") is None

        chain = await registry.accounts_by_phone(session, "+994778604692")
        assert [a.code for a in chain] == ["5412017015"]
        assert chain[0].id is not None
        points = await registry.metering_points(session, chain[0].id)
        assert [p.code for p in points] == [f"UN-{n:04d}" for n in range(1, 13)]
        assert points[0].address == "Bakı şəhəri, Xətai rayonu, Babək prospekti 22, 1-ci mərtəbə, supermarket"
        assert points[0].region == "Xətai"
        assert points[11].region == "Binəqədi"

        landlord = await registry.accounts_by_phone(session, "+994993491065")
        assert len(landlord) == 10 and {a.kind for a in landlord} == {"residential"}

        assert await registry.accounts_by_phone(session, "+994501111111") == []
        assert await registry.persons_by_phone(session, "+994501111111") == []


# --- good files ---------------------------------------------------------------------------------------


async def test_small_file_imports_and_normalises(db: Database) -> None:
    data = make_csv(
        row(AYGUN, fin="az4k7p2", phone="050 123 45 67"),  # lower-case FİN, national phone format
        row(AYGUN_2, fin="AZ4K7P2", phone="+994 50 123 45 67"),
        ELVIN_SHOP_1,
        ELVIN_SHOP_2,
        RAMIL,
    )
    report = await load(db, data)
    assert (report.persons, report.accounts, report.metering_points) == (3, 4, 2)
    assert await counts(db) == (3, 4, 2)
    aygun = await person(db, "AZ4K7P2")  # the FİN is upper-cased
    assert (aygun.full_name, aygun.phone) == ("Həsənova Aygün Rauf qızı", "+994501234567")  # E.164
    shop = await account(db, "2233445566")
    assert shop.id is not None and shop.address is None and shop.region is None
    async with db.transaction() as session:
        assert [a.code for a in await registry.accounts_by_phone(session, "+994501234567")] == [
            "100200300400500",
            "100200300400501",
        ]
        points = await registry.metering_points(session, shop.id)
        assert [(p.code, p.address, p.region) for p in points] == [
            ("MN-01", "Sumqayıt şəhəri, Sülh küçəsi 40, mağaza", "Sumqayıt"),
            ("MN-02", "Sumqayıt şəhəri, 9-cu mikrorayon, anbar 2", "Sumqayıt"),
        ]


@pytest.mark.parametrize("prefix", ["50", "51", "55", "70", "77", "99", "10"])
async def test_every_mobile_prefix_is_accepted(db: Database, prefix: str) -> None:
    await load(db, make_csv(row(RAMIL, phone=f"+994{prefix}3456789")))
    assert (await person(db, RAMIL["fin"])).phone == f"+994{prefix}3456789"


async def test_bom_crlf_blank_lines_and_spaced_header_are_accepted(db: Database) -> None:
    """What a spreadsheet on Windows saves: a BOM, CRLF, a trailing blank line, a header with spaces."""
    header = " FIN , Full_Name ,phone,kind,code,metering_point,address,region"
    text = make_csv(AYGUN, ELVIN_SHOP_1, header=header, end="\r\n") + b"\r\n,,,,,,,\r\n"
    report = await load(db, b"\xef\xbb\xbf" + text)
    assert (report.persons, report.accounts, report.metering_points) == (2, 2, 1)
    assert (await person(db, "AZ4K7P2")).fin == "AZ4K7P2"  # the BOM is not glued to anything


async def test_limits_are_inclusive(db: Database) -> None:
    name = "Məmmədova " + "Ə" * 190  # 200 characters
    address = "Bakı şəhəri, " + "ş" * 287  # 300 characters
    region = "N" * 100
    await load(db, make_csv(row(AYGUN, full_name=name, address=address, region=region)))
    stored = await account(db, AYGUN["code"])
    assert (stored.address, stored.region) == (address, region)
    assert (await person(db, AYGUN["fin"])).full_name == name


async def test_family_sharing_one_phone(db: Database) -> None:
    husband = row(RAMIL, phone=AYGUN["phone"], full_name="Həsənov Vüqar İlham oğlu")
    await load(db, make_csv(AYGUN, husband))
    async with db.transaction() as session:
        people = await registry.persons_by_phone(session, AYGUN["phone"])
        assert [p.full_name for p in people] == ["Həsənov Vüqar İlham oğlu", "Həsənova Aygün Rauf qızı"]
        codes = [a.code for a in await registry.accounts_by_phone(session, AYGUN["phone"])]
        assert codes == [AYGUN["code"], RAMIL["code"]]


@pytest.mark.parametrize(
    "text",
    [
        "<b>x</b>",
        "'); DROP TABLE person;--",
        '"; DELETE FROM account WHERE 1=1; --',
        "<script>alert('ə')</script> & &amp; {{7*7}} %s %(x)s \\n",
    ],
)
async def test_html_and_sql_in_text_are_stored_unchanged(db: Database, text: str) -> None:
    name = f"Həsənova Aygün {text}"
    address = f"Bakı şəhəri, Nəsimi rayonu, {text}"
    await load(
        db,
        make_csv(
            row(AYGUN, full_name=name, address=address, region=text),
            row(ELVIN_SHOP_1, full_name=text, address=text, region=text),
        ),
    )
    assert await counts(db) == (2, 2, 1)  # every table is still there, with what was imported
    assert (await person(db, AYGUN["fin"])).full_name == name
    assert (await person(db, ELVIN_SHOP_1["fin"])).full_name == text
    stored = await account(db, AYGUN["code"])
    assert (stored.address, stored.region) == (address, text)
    shop = await account(db, ELVIN_SHOP_1["code"])
    assert shop.id is not None
    async with db.transaction() as session:
        [point] = await registry.metering_points(session, shop.id)
        assert (point.address, point.region) == (text, text)


# --- bad lines -------------------------------------------------------------------------------------

# Each case: rows after the header; the bad one comes after a good line, so it is line 3.
GOOD_BEFORE = AYGUN
GOOD_AFTER = RAMIL
BAD_LINES: list[tuple[str, str, str]] = [
    ("fin-too-short", line(row(NIGAR, fin="7TRW2H")), "bad FİN"),
    ("fin-too-long", line(row(NIGAR, fin="7TRW2HJK")), "bad FİN"),
    ("fin-with-I", line(row(NIGAR, fin="7TRI2HJ")), "bad FİN"),
    ("fin-with-O", line(row(NIGAR, fin="7TRO2HJ")), "bad FİN"),
    ("fin-with-azerbaijani-letter", line(row(NIGAR, fin="7TRƏ2HJ")), "bad FİN"),
    ("fin-empty", line(row(NIGAR, fin="")), "bad FİN"),
    ("phone-words", line(row(NIGAR, phone="nömrə yoxdur")), "bad phone"),
    ("phone-empty", line(row(NIGAR, phone="")), "bad phone"),
    ("phone-russian", line(row(NIGAR, phone="+79161234567")), "bad phone"),
    ("phone-turkish", line(row(NIGAR, phone="+905321234567")), "bad phone"),
    ("phone-baku-landline", line(row(NIGAR, phone="+994124987654")), "bad phone"),
    ("phone-too-short", line(row(NIGAR, phone="+99450123456")), "bad phone"),
    ("kind-unknown", line(row(NIGAR, kind="commercial")), "unknown kind"),
    ("kind-empty", line(row(NIGAR, kind="")), "unknown kind"),
    ("residential-with-point", line(row(NIGAR, metering_point="UN-0001")), "residential row has a metering"),
    ("non-residential-without-point", line(row(ELVIN_SHOP_1, metering_point="")), "needs a metering point"),
    ("point-with-spaces", line(row(ELVIN_SHOP_1, metering_point="MN 01")), "bad metering point"),
    ("code-with-letters", line(row(NIGAR, code="40050060070080A")), "bad code"),
    ("code-too-short", line(row(NIGAR, code="40050")), "bad code"),
    ("name-empty", line(row(NIGAR, full_name="")), "full_name"),
    ("name-201-characters", line(row(NIGAR, full_name="Ə" * 201)), "full_name"),
    ("address-empty", line(row(NIGAR, address="  ")), "address"),
    ("address-301-characters", line(row(NIGAR, address="Şəki şəhəri, " + "ş" * 288)), "address"),
    ("point-address-301", line(row(ELVIN_SHOP_1, address="S" * 301)), "address"),
    ("region-empty", line(row(NIGAR, region="")), "region"),
    ("region-101-characters", line(row(NIGAR, region="Ş" * 101)), "region"),
    ("seven-fields", line(NIGAR).rsplit(",", 1)[0], "expected 8 fields, found 7"),
    ("nine-fields", line(NIGAR) + ",əlavə", "expected 8 fields, found 9"),
    ("one-field", "7TRW2HJ", "expected 8 fields, found 1"),
    ("bell-in-name", line(row(NIGAR, full_name="Əliyeva\x07 Nigar")), "control characters"),
    ("nul-in-address", line(row(NIGAR, address="Şəki\x00 şəhəri")), "control characters"),
    ("escape-in-region", line(row(NIGAR, region="\x1b[31mŞəki")), "control characters"),
    ("delete-in-code", line(row(NIGAR, code="400500\x7f600700800")), "control characters"),
    ("c1-control-in-name", line(row(NIGAR, full_name="Əliyeva\x85Nigar")), "control characters"),
    # Conflicts with the good line before (line 2):
    ("same-code-other-owner", line(row(NIGAR, code=AYGUN["code"])), "another owner (line 2)"),
    ("same-fin-other-name", line(row(AYGUN_2, full_name="Həsənova Aygün")), "another name or phone"),
    ("same-fin-other-phone", line(row(AYGUN_2, phone="+994501234568")), "another name or phone"),
    (
        "duplicate-residential-code",
        line(row(AYGUN, address="Bakı şəhəri, başqa ünvan")),
        "duplicate subscriber",
    ),
    (
        "same-code-other-kind",
        line(row(AYGUN, kind="non_residential", metering_point="UN-1")),
        "is residential",
    ),
]


@pytest.mark.parametrize(("rows", "reason"), [(c[1], c[2]) for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
async def test_bad_line_is_named_and_nothing_changes(db: Database, rows: str, reason: str) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    # A refresh that would change a lot if applied: a phone changes, an account and a point go,
    # a new person comes; the bad line spoils it all.
    data = make_csv(GOOD_BEFORE, rows, row(GOOD_AFTER, phone="+994709999999"), ELVIN_SHOP_1)
    errors = await refused(db, data)
    assert [e.line for e in errors] == [3], errors
    assert reason in errors[0].reason
    assert str(errors[0]).startswith("line 3: ")
    assert await snapshot(db) == before


async def test_duplicate_metering_point_of_a_main_code(db: Database) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    data = make_csv(ELVIN_SHOP_1, ELVIN_SHOP_2, AYGUN, row(ELVIN_SHOP_1, address="Sumqayıt şəhəri, başqa"))
    errors = await refused(db, data)
    assert [(e.line, e.reason) for e in errors] == [
        (5, "duplicate metering point MN-01 of 2233445566 (line 2)")
    ]
    assert await snapshot(db) == before


async def test_quoted_line_break_in_a_field_is_refused(db: Database) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    errors = await refused(db, make_csv(AYGUN, row(NIGAR, address="Şəki şəhəri,\nNizami küçəsi 19")))
    assert len(errors) == 1 and "control characters" in errors[0].reason
    assert errors[0].line == 3  # the record spans lines 3 and 4; it is named by where it starts
    assert await snapshot(db) == before


@pytest.mark.parametrize("phone", ["+99450ABCDEFG", "+994 50 FOR SALE", "+994501234567A"])
async def test_phone_with_letters_is_refused(db: Database, phone: str) -> None:
    errors = await refused(db, make_csv(AYGUN, row(NIGAR, phone=phone)))
    assert [e.line for e in errors] == [3] and "bad phone" in errors[0].reason


@pytest.mark.parametrize("code", ["٤٠٠٥٠٠٦٠٠٧٠٠٨٠٠", "４００５００６００７００８００"])
async def test_code_of_non_ascii_digits_is_refused(db: Database, code: str) -> None:
    errors = await refused(db, make_csv(AYGUN, row(NIGAR, code=code)))
    assert [e.line for e in errors] == [3] and "bad code" in errors[0].reason


async def test_every_bad_line_is_reported(db: Database) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    data = make_csv(
        AYGUN,  # 2
        row(NIGAR, fin="7TRO2HJ"),  # 3: bad FİN
        ELVIN_SHOP_1,  # 4
        row(RAMIL, phone="+994124987654", kind="ticarət"),  # 5: landline and unknown kind
        "",  # 6: a blank line is skipped but still counted
        row(ELVIN_SHOP_2, metering_point=""),  # 7: no metering point
        row(NIGAR, code=AYGUN["code"]),  # 8: another owner's code
        "7TRW2HJ,Əliyeva Nigar Vaqif qızı",  # 9: two fields
        row(NIGAR, address="Şəki şəhəri, " + "ş" * 288),  # 10: 301 characters
    )
    errors = await refused(db, data)
    assert [e.line for e in errors] == [3, 5, 7, 8, 9, 10], errors
    by_line = {e.line: e.reason for e in errors}
    assert "bad FİN" in by_line[3]
    assert "bad phone" in by_line[5] and "unknown kind 'ticarət'" in by_line[5]  # both reasons of one line
    assert "needs a metering point" in by_line[7]
    assert "another owner (line 2)" in by_line[8]
    assert "expected 8 fields, found 2" in by_line[9]
    assert "address" in by_line[10]
    assert str(RegistryImportError(errors)).splitlines()[0].startswith("line 3: bad FİN")
    assert await snapshot(db) == before


# --- bad files -------------------------------------------------------------------------------------

BAD_FILES: list[tuple[str, bytes, int, str]] = [
    ("empty", b"", 0, "empty"),
    ("header-only", (HEADER + "\n").encode(), 0, "no rows"),
    ("header-and-blank-lines", (HEADER + "\n\n,,,,,,,\n").encode(), 0, "no rows"),
    ("wrong-header", make_csv(AYGUN, header="fin,name,phone,kind,code,point,address,region"), 1, "header"),
    ("reordered-header", make_csv(header=",".join(sorted(COLUMNS))), 1, "header"),
    ("no-header", make_csv(RAMIL, header=line(AYGUN)), 1, "header"),
    ("semicolons", make_csv(header=HEADER.replace(",", ";")), 1, "header"),
    (
        "cp1251",
        (HEADER + "\n7TRW2HJ,Алиева Нигяр,+994774567890,residential,400500600700800,,Баку,Насими\n").encode(
            "cp1251"
        ),
        0,
        "not UTF-8",
    ),
    ("utf-16", make_csv(AYGUN).decode().encode("utf-16"), 0, "not UTF-8"),
]


@pytest.mark.parametrize(
    ("data", "line_no", "reason"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
async def test_bad_file_is_refused_whole(db: Database, data: bytes, line_no: int, reason: str) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    errors = await refused(db, data)
    assert [e.line for e in errors] == [line_no]
    assert reason in errors[0].reason
    assert await snapshot(db) == before


async def test_bad_file_on_an_empty_database_leaves_it_empty(db: Database) -> None:
    await refused(db, make_csv(*BASE, row(NIGAR, phone="+994124987654")))
    assert await counts(db) == (0, 0, 0)


# --- refresh ---------------------------------------------------------------------------------------


async def test_refresh_deactivates_updates_and_adds(db: Database) -> None:
    first = await load(db, make_csv(*BASE))
    assert (first.persons, first.accounts, first.metering_points, first.deactivated) == (3, 4, 2, 0)
    assert (first.persons_added, first.accounts_added, first.metering_points_added) == (3, 4, 2)
    old_second = await account(db, AYGUN_2["code"])
    old_ramil = await person(db, RAMIL["fin"])

    # Aygün's second account and the shop's second point are gone; Ramil has a new phone; Nigar is new.
    # One of four active accounts goes: over the 5% limit, so the operator allows it.
    new_phone = "+994519876543"
    data = make_csv(AYGUN, ELVIN_SHOP_1, row(RAMIL, phone=new_phone), NIGAR)
    report = await load(db, data, max_deactivate=None)
    assert (report.persons, report.accounts, report.metering_points, report.deactivated) == (4, 4, 1, 2)
    assert report == ImportReport(
        persons=4,
        accounts=4,
        metering_points=1,
        persons_added=1,  # Nigar
        persons_changed=1,  # Ramil's phone
        accounts_added=1,  # Nigar's
        accounts_changed=0,
        accounts_deactivated=1,  # Aygün's second
        metering_points_added=0,
        metering_points_changed=0,
        metering_points_deactivated=1,  # MN-02
    )
    assert await counts(db) == (4, 5, 2)  # nothing is deleted

    gone = await account(db, AYGUN_2["code"])
    assert gone.id == old_second.id and gone.active is False
    assert gone.address == AYGUN_2["address"]  # kept as it was, for applications that refer to it
    assert (await account(db, AYGUN["code"])).active is True

    ramil = await person(db, RAMIL["fin"])
    assert ramil.id == old_ramil.id and ramil.phone == new_phone

    shop = await account(db, ELVIN_SHOP_1["code"])
    assert shop.id is not None
    async with db.transaction() as session:
        assert [a.code for a in await registry.accounts_by_phone(session, AYGUN["phone"])] == [AYGUN["code"]]
        assert await registry.phone_for_code(session, AYGUN_2["code"]) is None
        assert await registry.phone_for_code(session, RAMIL["code"]) == new_phone
        assert await registry.accounts_by_phone(session, RAMIL["phone"]) == []
        assert await registry.persons_by_phone(session, RAMIL["phone"]) == []
        assert [p.fin for p in await registry.persons_by_phone(session, new_phone)] == [RAMIL["fin"]]
        assert [a.code for a in await registry.accounts_by_phone(session, NIGAR["phone"])] == [NIGAR["code"]]

        assert [p.code for p in await registry.metering_points(session, shop.id)] == ["MN-01"]
        all_points = (await session.scalars(select(MeteringPoint).order_by(MeteringPoint.code))).all()
        assert [(p.code, p.active) for p in all_points] == [("MN-01", True), ("MN-02", False)]


async def test_person_without_active_accounts_is_not_found(db: Database) -> None:
    await load(db, make_csv(*BASE))
    # Ramil's only account is gone
    await load(db, make_csv(AYGUN, AYGUN_2, ELVIN_SHOP_1, ELVIN_SHOP_2), max_deactivate=None)
    assert (await account(db, RAMIL["code"])).active is False
    async with db.transaction() as session:
        assert await registry.persons_by_phone(session, RAMIL["phone"]) == []
        assert await registry.accounts_by_phone(session, RAMIL["phone"]) == []


async def test_account_that_comes_back_is_active_again(db: Database) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    await load(db, make_csv(AYGUN, ELVIN_SHOP_1), max_deactivate=None)
    report = await load(db, make_csv(*BASE))
    assert report.deactivated == 0
    # Active again counts as changed: Aygün's second account, Ramil's account and the point MN-02.
    assert report == ImportReport(
        persons=3, accounts=4, metering_points=2, accounts_changed=2, metering_points_changed=1
    )
    assert await snapshot(db) == before  # same rows, same ids, all active again


async def test_account_moves_to_another_owner(db: Database) -> None:
    await load(db, make_csv(*BASE))
    moved = row(AYGUN_2, **{k: NIGAR[k] for k in ("fin", "full_name", "phone")})
    report = await load(db, make_csv(AYGUN, moved), max_deactivate=None)
    assert (report.persons_added, report.persons_changed) == (1, 0)
    assert (report.accounts_added, report.accounts_changed, report.accounts_deactivated) == (0, 1, 2)
    async with db.transaction() as session:
        nigar = await registry.accounts_by_phone(session, NIGAR["phone"])
        aygun = await registry.accounts_by_phone(session, AYGUN["phone"])
    assert [a.code for a in nigar] == [AYGUN_2["code"]]
    assert [a.code for a in aygun] == [AYGUN["code"]]


async def test_reimport_is_idempotent(db: Database) -> None:
    data = make_csv(*BASE)
    first = await load(db, data)
    before = await snapshot(db)
    second = await load(db, data)
    assert second == ImportReport(persons=3, accounts=4, metering_points=2)  # nothing added or changed
    assert first == ImportReport(
        persons=3,
        accounts=4,
        metering_points=2,
        persons_added=3,
        accounts_added=4,
        metering_points_added=2,
    )
    assert await counts(db) == (3, 4, 2)
    assert await snapshot(db) == before


async def test_sample_reimport_is_idempotent(sample_db: Database) -> None:
    before = await snapshot(sample_db)
    report = await load(sample_db, registry.SAMPLE_CSV.read_bytes())
    assert report == ImportReport(persons=25, accounts=43, metering_points=25)
    assert await counts(sample_db) == (25, 43, 25)
    assert await snapshot(sample_db) == before


# --- a refresh that would set too many accounts inactive ---------------------------------------------

FIVE = [*BASE, NIGAR]  # five accounts: Aygün's two, the shop (two points), Ramil's and Nigar's
SAMPLE_HEADER, *SAMPLE_ROWS = registry.SAMPLE_CSV.read_text(
    encoding="utf-8"
).splitlines()  # 62 rows, 43 accounts


def sample_rows(rows: list[str]) -> bytes:
    """A file of these lines of the sample, under its header."""
    return make_csv(*rows, header=SAMPLE_HEADER)


def sample_without(n: int) -> bytes:
    """The sample without its last `n` rows: each is one residential account of its own."""
    return sample_rows(SAMPLE_ROWS[: len(SAMPLE_ROWS) - n])


async def active_accounts(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).where(col(Account.active))) or 0)


async def too_many(db: Database, data: bytes, max_deactivate: float = 5) -> TooManyDeactivations:
    with pytest.raises(TooManyDeactivations) as caught:
        await load(db, data, max_deactivate=max_deactivate)
    return caught.value


async def test_a_two_row_file_over_the_sample_is_refused(sample_db: Database) -> None:
    before = await snapshot(sample_db)
    error = await too_many(sample_db, sample_rows(SAMPLE_ROWS[:2]))  # two of Rauf's residential accounts
    assert (error.active, error.deactivating, error.max_percent) == (43, 41, 5)
    assert (
        error.reason == "it would set 41 of 43 active accounts inactive (95.35%), more than the limit of 5%"
    )
    assert [(e.line, e.reason) for e in error.errors] == [(0, error.reason)]  # still a RegistryImportError
    assert await snapshot(sample_db) == before
    assert await active_accounts(sample_db) == 43

    report = await load(sample_db, sample_rows(SAMPLE_ROWS[:2]), max_deactivate=None)  # --allow-deactivate
    assert report == ImportReport(
        persons=1, accounts=2, metering_points=0, accounts_deactivated=41, metering_points_deactivated=25
    )
    assert await active_accounts(sample_db) == 2
    assert await counts(sample_db) == (25, 43, 25)  # nothing deleted


async def test_a_two_row_file_over_five_accounts_is_refused(db: Database) -> None:
    await load(db, make_csv(*FIVE))
    before = await snapshot(db)
    error = await too_many(db, make_csv(AYGUN, RAMIL))
    assert error.reason == "it would set 3 of 5 active accounts inactive (60%), more than the limit of 5%"
    assert await snapshot(db) == before
    for code in (AYGUN_2["code"], ELVIN_SHOP_1["code"], NIGAR["code"]):
        assert (await account(db, code)).active is True
    # The refusal is checked before anything is written: the same file with a change is refused too.
    await too_many(db, make_csv(row(AYGUN, phone="+994501234568"), NIGAR))
    assert await snapshot(db) == before


async def test_a_refresh_under_the_limit_goes_through(sample_db: Database) -> None:
    report = await load(sample_db, sample_without(2))  # 2 of 43 accounts: 4.65%
    assert report == ImportReport(persons=23, accounts=41, metering_points=25, accounts_deactivated=2)
    assert await active_accounts(sample_db) == 41
    for code in ("590869685200678", "599805035871914"):  # the last two rows
        assert (await account(sample_db, code)).active is False

    # The two already inactive do not count again: this refresh sets 1 of 41 inactive.
    report = await load(sample_db, sample_without(3))
    assert report.accounts_deactivated == 1
    assert await active_accounts(sample_db) == 40


async def test_the_limit_is_a_share_of_the_active_accounts(sample_db: Database) -> None:
    before = await snapshot(sample_db)
    error = await too_many(sample_db, sample_without(3))
    assert error.reason == "it would set 3 of 43 active accounts inactive (6.98%), more than the limit of 5%"
    error = await too_many(sample_db, sample_without(3), max_deactivate=6.9)
    assert error.reason.endswith("(6.98%), more than the limit of 6.9%")
    assert await snapshot(sample_db) == before
    report = await load(sample_db, sample_without(3), max_deactivate=7)
    assert report.accounts_deactivated == 3


async def test_deactivating_exactly_the_limit_goes_through(db: Database) -> None:
    await load(db, make_csv(*FIVE))
    await too_many(db, make_csv(*BASE), max_deactivate=19.99)  # 1 of 5 is 20%
    report = await load(db, make_csv(*BASE), max_deactivate=20)
    assert (report.accounts_deactivated, report.metering_points_deactivated) == (1, 0)
    assert (await account(db, NIGAR["code"])).active is False


async def test_a_limit_of_zero_refuses_any_deactivation(db: Database) -> None:
    await load(db, make_csv(*FIVE))
    error = await too_many(db, make_csv(*BASE), max_deactivate=0)
    assert error.reason == "it would set 1 of 5 active accounts inactive (20%), more than the limit of 0%"
    report = await load(db, make_csv(*FIVE, row(NIGAR, code="400500600700801")), max_deactivate=0)
    assert (report.accounts_added, report.deactivated) == (1, 0)  # adding is never limited


async def test_the_first_import_is_never_refused(db: Database) -> None:
    report = await load(db, make_csv(AYGUN, RAMIL), max_deactivate=0)
    assert report == ImportReport(persons=2, accounts=2, persons_added=2, accounts_added=2)
    assert await active_accounts(db) == 2


async def test_only_active_accounts_count(db: Database) -> None:
    await load(db, make_csv(*FIVE))
    await load(db, make_csv(AYGUN, RAMIL), max_deactivate=None)  # 2 active, 3 inactive
    # Losing one of the two active accounts is 50%, not 1 of 5: refused. The inactive ones stay inactive.
    error = await too_many(db, make_csv(AYGUN, NIGAR), max_deactivate=40)
    assert (error.active, error.deactivating) == (2, 1)
    report = await load(db, make_csv(AYGUN, NIGAR), max_deactivate=50)
    assert (report.accounts_changed, report.accounts_deactivated) == (1, 1)  # Nigar's is active again


@pytest.mark.parametrize(
    ("active", "deactivating", "limit", "ok"),
    [
        (0, 0, 5, True),  # an empty registry
        (0, 0, 0, True),
        (20, 1, 5, True),  # exactly 5%
        (19, 1, 5, False),  # 5.26%
        (100, 5, 5, True),
        (100, 6, 5, False),
        (43, 2, 5, True),
        (43, 3, 5, False),
        (10, 0, 0, True),
        (10, 1, 0, False),
        (10, 10, 100, True),
        (1000, 1, 0.1, True),  # 0.1% exactly, not a float's 0.1000000000000000055
        (1000, 2, 0.1, False),
        (3, 1, 33.34, True),
        (3, 1, 33.33, False),
        (5, 5, None, True),  # no limit
    ],
)
def test_check_deactivation(active: int, deactivating: int, limit: float | None, ok: bool) -> None:
    if ok:
        registry.check_deactivation(active, deactivating, limit)
    else:
        with pytest.raises(TooManyDeactivations) as caught:
            registry.check_deactivation(active, deactivating, limit)
        assert (caught.value.active, caught.value.deactivating, caught.value.max_percent) == (
            active,
            deactivating,
            limit,
        )


@pytest.mark.parametrize(
    ("active", "deactivating", "limit", "shown"),
    [
        (43, 41, 5, "41 of 43 active accounts inactive (95.35%), more than the limit of 5%"),
        (100_000, 5_001, 5, "5001 of 100000 active accounts inactive (5.001%), more than the limit of 5%"),
        (10**6, 69_941, 6.994, "(6.9941%), more than the limit of 6.994%"),  # not 6.99%, under the limit
        (100_000, 1, 0, "(0.001%), more than the limit of 0%"),  # not 0%
        (3, 1, 33.33, "(33.333%), more than the limit of 33.33%"),
    ],
)
def test_the_refusal_shows_a_share_above_the_limit(
    active: int, deactivating: int, limit: float, shown: str
) -> None:
    with pytest.raises(TooManyDeactivations) as caught:
        registry.check_deactivation(active, deactivating, limit)
    assert caught.value.reason.endswith(shown)
    assert caught.value.reason.startswith("it would set ")


# --- spreadsheet formulas -------------------------------------------------------------------------------

# (value, what the error quotes as its start). A spreadsheet would run each of these as a formula.
FORMULAS: list[tuple[str, str]] = [
    ('=HYPERLINK("http://evil","x")', "="),
    ("=cmd|'/C calc'!A0", "="),
    ("@SUM(1+1)", "@"),
    ("+SUM(1+1)", "+SUM("),
    ("-1+1", "-1+"),
    ("+cmd|'/C calc'!A0", "+cmd|"),
    ('-HYPERLINK("http://evil","x")', "-HYPERLINK("),
    ("+ SUM (A1)", "+ SUM ("),
    ("--1+1", "--1+"),
    ("-=1+1", "-="),
    ("+@SUM(1)", "+@"),
    ("-(1+1)", "-("),
    ('+"a"&"b"', '+"'),
    ("+A1", "+A1"),
    ("-$B$2", "-$B$2"),
    ("-Sheet1!A1", "-Sheet1!"),
    ("-СУММ(A1)", "-СУММ("),  # a function name of a Russian spreadsheet
    ("-2*3", "-2*"),
    ("\t=1+1", "="),
    ("\r@SUM(1)", "@"),
    ("\t-1+1", "-1+"),
    ("\r+cmd|'/C calc'!A0", "+cmd|"),
    ('\t\r-HYPERLINK("x")', "-HYPERLINK("),
    ("＝1+1", "="),  # full width
    ("＠SUM(1)", "@"),
    ("＋SUM(1)", "+SUM("),
]


@pytest.mark.parametrize(("value", "start"), FORMULAS, ids=[repr(f[0]) for f in FORMULAS])
async def test_formula_in_a_text_column_is_refused(db: Database, value: str, start: str) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    data = make_csv(
        AYGUN,  # 2
        row(NIGAR, full_name=value),  # 3
        row(RAMIL, address=value),  # 4
        row(ELVIN_SHOP_1, region=value),  # 5: a metering point's region
        row(ELVIN_SHOP_2, address=value),  # 6: a metering point's address
    )
    errors = await refused(db, data)
    lines = [3 + n * (2 if "\r" in value else 1) for n in range(4)]  # a quoted CR ends a line too
    why = f"looks like a spreadsheet formula (it starts with {start!r})"
    assert [(e.line, e.reason) for e in errors] == [
        (lines[0], f"full_name {why}"),
        (lines[1], f"address {why}"),
        (lines[2], f"region {why}"),
        (lines[3], f"address {why}"),
    ]
    assert await snapshot(db) == before


async def test_formula_on_an_empty_database_imports_nothing(db: Database) -> None:
    errors = await refused(db, make_csv(AYGUN, row(NIGAR, region="@SUM(1+1)"), RAMIL))
    assert [(e.line, e.reason) for e in errors] == [
        (3, "region looks like a spreadsheet formula (it starts with '@')")
    ]
    assert await counts(db) == (0, 0, 0)


async def test_formula_joins_the_other_reasons_of_a_line(db: Database) -> None:
    errors = await refused(db, make_csv(row(NIGAR, fin="7TRO2HJ", full_name="=1+1", address="-1+1")))
    assert [(e.line, e.reason) for e in errors] == [
        (
            2,
            "bad FİN: 7 characters of 0-9 and A-Z without I and O; "
            "full_name looks like a spreadsheet formula (it starts with '='); "
            "address looks like a spreadsheet formula (it starts with '-1+')",
        )
    ]


# (column, value): what a real registry holds that only looks like a formula at first sight.
LOOK_ALIKES: list[tuple[str, str]] = [
    ("full_name", "Əliyeva-Məmmədova Nigar Vaqif qızı"),
    ("full_name", "Əliyeva Nigar (=Nigarə) Vaqif qızı"),
    ("address", "Bakı şəhəri, Yasamal rayonu, M. Hadi küç. 12-14"),
    ("address", "28 May küçəsi 47, mənzil 3"),
    ("address", "20-ci sahə, Səbail rayonu, ev 5+6"),
    ("address", "AZ1000, Bakı şəhəri, Nizami küçəsi 10"),
    ("address", "Şəki şəhəri, mağaza @Nigar"),
    ("region", "Xətai"),
    ("region", "-"),  # a placeholder some exports write
    ("region", "--"),
    ("region", "- Şəki"),
    ("region", "-5"),  # a number, not a formula
    ("region", "—"),
]


@pytest.mark.parametrize(("column", "value"), LOOK_ALIKES, ids=[f"{c}={v}" for c, v in LOOK_ALIKES])
async def test_formula_look_alikes_are_imported(db: Database, column: str, value: str) -> None:
    await load(db, make_csv(AYGUN, row(NIGAR, **{column: value})))
    nigar = await account(db, NIGAR["code"])
    if column == "full_name":
        assert (await person(db, NIGAR["fin"])).full_name == value
    else:
        assert getattr(nigar, column) == value


@pytest.mark.parametrize("phone", ["+994501234567", "+994-50-123-45-67", "+994 (50) 123-45-67"])
async def test_a_phone_with_a_plus_or_dashes_is_a_phone(db: Database, phone: str) -> None:
    await load(db, make_csv(row(AYGUN, phone=phone)))
    assert (await person(db, AYGUN["fin"])).phone == "+994501234567"


# --- company and VÖEN: who holds a non-residential account -------------------------------------------

SHOP_COMPANY = {"company": "Babayev Ticarət MMC", "voen": "1403927561"}


async def test_company_and_voen_are_imported(db: Database) -> None:
    data = make_full_csv(
        AYGUN,  # a residential row: both empty
        row(ELVIN_SHOP_1, company="Babayev Ticarət MMC", voen=" 1403 927 561 "),  # spaces are dropped
        row(ELVIN_SHOP_2, **SHOP_COMPANY),
        RAMIL,
    )
    report = await load(db, data)
    assert (report.persons, report.accounts, report.metering_points) == (3, 3, 2)
    shop = await account(db, ELVIN_SHOP_1["code"])
    assert (shop.company, shop.voen) == ("Babayev Ticarət MMC", "1403927561")
    aygun = await account(db, AYGUN["code"])
    assert (aygun.company, aygun.voen) == (None, None)  # empty is None, not ""
    async with db.transaction() as session:
        [found] = await registry.accounts_by_phone(session, ELVIN_SHOP_1["phone"])
        assert (found.company, found.voen) == ("Babayev Ticarət MMC", "1403927561")
        [view] = await RegistryAdapter(session).accounts_by_phone(ELVIN_SHOP_1["phone"])
        assert (view.kind, view.company, view.voen) == (
            "non_residential",
            "Babayev Ticarət MMC",
            "1403927561",
        )
        [person_view] = await RegistryAdapter(session).accounts_by_phone(AYGUN["phone"])
        assert (person_view.company, person_view.voen) == (None, None)


async def test_company_and_voen_may_be_left_empty_or_one_column_may_be_missing(db: Database) -> None:
    await load(db, make_full_csv(AYGUN, ELVIN_SHOP_1, row(ELVIN_SHOP_2)))
    shop = await account(db, ELVIN_SHOP_1["code"])
    assert (shop.company, shop.voen) == (None, None)

    only_voen = make_csv(
        *(line(r, (*COLUMNS, "voen")) for r in (row(ELVIN_SHOP_1, voen="1403927561"), AYGUN)),
        header=f"{HEADER},voen",
    )
    assert (await load(db, only_voen, max_deactivate=None)).accounts_changed == 1
    shop = await account(db, ELVIN_SHOP_1["code"])
    assert (shop.company, shop.voen) == (None, "1403927561")


async def test_company_limit_is_inclusive(db: Database) -> None:
    company = "Babayev " + "Ə" * 188 + " MMC"  # 200 characters
    await load(db, make_full_csv(row(ELVIN_SHOP_1, company=company, voen="1403927561")))
    assert (await account(db, ELVIN_SHOP_1["code"])).company == company


# Each case: one line of a file with company and voen; the bad one is line 3.
BAD_COMPANY_LINES: list[tuple[str, dict[str, str], str]] = [
    ("voen-9-digits", row(ELVIN_SHOP_1, voen="140392756"), "bad VÖEN: 10 digits"),
    ("voen-11-digits", row(ELVIN_SHOP_1, voen="14039275611"), "bad VÖEN: 10 digits"),
    ("voen-letters", row(ELVIN_SHOP_1, voen="14039A7561"), "bad VÖEN: 10 digits"),
    ("voen-words", row(ELVIN_SHOP_1, voen="yoxdur"), "bad VÖEN: 10 digits"),
    ("voen-with-dashes", row(ELVIN_SHOP_1, voen="1403-927-561"), "bad VÖEN: 10 digits"),
    ("voen-arabic-digits", row(ELVIN_SHOP_1, voen="١٤٠٣٩٢٧٥٦١"), "bad VÖEN: 10 digits"),
    ("voen-full-width", row(ELVIN_SHOP_1, voen="１４０３９２７５６１"), "bad VÖEN: 10 digits"),
    ("company-201", row(ELVIN_SHOP_1, company="Ə" * 201), "company is longer than 200 characters"),
    ("company-on-residential", row(NIGAR, company="Əliyeva MMC"), "a residential row has a company or VÖEN"),
    ("voen-on-residential", row(NIGAR, voen="1403927561"), "a residential row has a company or VÖEN"),
    (
        "company-formula",
        row(ELVIN_SHOP_1, company='=HYPERLINK("http://evil","x")'),
        "company looks like a spreadsheet formula (it starts with '=')",
    ),
    (
        "company-sign-formula",
        row(ELVIN_SHOP_1, company="+cmd|'/C calc'!A0"),
        "company looks like a spreadsheet formula (it starts with '+cmd|')",
    ),
    (
        "company-control-character",
        row(ELVIN_SHOP_1, company="Babayev\x07 MMC"),
        "control characters or invisible formatting in a field",
    ),
]


@pytest.mark.parametrize(
    ("bad", "reason"), [c[1:] for c in BAD_COMPANY_LINES], ids=[c[0] for c in BAD_COMPANY_LINES]
)
async def test_bad_company_or_voen_is_named_and_nothing_changes(
    db: Database, bad: dict[str, str], reason: str
) -> None:
    await load(db, make_full_csv(*BASE))
    before = await snapshot(db)
    errors = await refused(db, make_full_csv(AYGUN, bad, RAMIL))
    assert [(e.line, e.reason) for e in errors] == [(3, reason)]
    assert await snapshot(db) == before


async def test_company_problems_join_the_other_reasons_of_a_line(db: Database) -> None:
    errors = await refused(db, make_full_csv(row(NIGAR, company="-SUM(A1)", voen="123")))
    assert [(e.line, e.reason) for e in errors] == [
        (
            2,
            "bad VÖEN: 10 digits; a residential row has a company or VÖEN; "
            "company looks like a spreadsheet formula (it starts with '-SUM(')",
        )
    ]


@pytest.mark.parametrize(
    "other",
    [{"company": "Başqa Şirkət MMC"}, {"voen": "1403927562"}, {"company": "", "voen": ""}],
    ids=["company", "voen", "empty"],
)
async def test_one_main_code_with_two_companies_is_a_conflict(db: Database, other: dict[str, str]) -> None:
    data = make_full_csv(row(ELVIN_SHOP_1, **SHOP_COMPANY), AYGUN, row(ELVIN_SHOP_2, **SHOP_COMPANY | other))
    errors = await refused(db, data)
    assert [(e.line, e.reason) for e in errors] == [
        (4, f"code {ELVIN_SHOP_1['code']} has another company or VÖEN on line 2")
    ]
    assert await counts(db) == (0, 0, 0)


async def test_a_file_without_the_columns_imports_as_before(db: Database) -> None:
    report = await load(db, make_csv(*BASE))
    assert report == ImportReport(
        persons=3, accounts=4, metering_points=2, persons_added=3, accounts_added=4, metering_points_added=2
    )
    shop = await account(db, ELVIN_SHOP_1["code"])
    assert (shop.company, shop.voen) == (None, None)


async def test_refresh_with_another_company_counts_as_changed(db: Database) -> None:
    shop = [row(ELVIN_SHOP_1, **SHOP_COMPANY), row(ELVIN_SHOP_2, **SHOP_COMPANY)]
    await load(db, make_full_csv(AYGUN, AYGUN_2, *shop, RAMIL))
    assert (await load(db, make_full_csv(AYGUN, AYGUN_2, *shop, RAMIL))).accounts_changed == 0

    renamed = [row(r, company="Babayev Qrup MMC") for r in shop]
    report = await load(db, make_full_csv(AYGUN, AYGUN_2, *renamed, RAMIL))
    assert report == ImportReport(persons=3, accounts=4, metering_points=2, accounts_changed=1)
    stored = await account(db, ELVIN_SHOP_1["code"])
    assert (stored.company, stored.voen) == ("Babayev Qrup MMC", SHOP_COMPANY["voen"])

    new_voen = [row(r, voen="1403927579") for r in renamed]
    report = await load(db, make_full_csv(AYGUN, AYGUN_2, *new_voen, RAMIL))
    assert report.accounts_changed == 1
    assert (await account(db, ELVIN_SHOP_1["code"])).voen == "1403927579"

    # Empty cells clear them: the registry no longer names the holder.
    report = await load(db, make_full_csv(*BASE))
    assert report.accounts_changed == 1
    stored = await account(db, ELVIN_SHOP_1["code"])
    assert (stored.company, stored.voen) == (None, None)


async def test_a_refresh_without_the_columns_keeps_the_company(db: Database) -> None:
    """An export in the old format says nothing of the company: what is stored stays."""
    await load(db, make_full_csv(AYGUN, row(ELVIN_SHOP_1, **SHOP_COMPANY), row(ELVIN_SHOP_2, **SHOP_COMPANY)))
    before = await snapshot(db)
    report = await load(db, make_csv(AYGUN, ELVIN_SHOP_1, ELVIN_SHOP_2))
    assert report == ImportReport(persons=2, accounts=2, metering_points=2)  # nothing changed
    assert await snapshot(db) == before
    stored = await account(db, ELVIN_SHOP_1["code"])
    assert (stored.company, stored.voen) == (SHOP_COMPANY["company"], SHOP_COMPANY["voen"])


async def test_an_account_that_becomes_residential_loses_its_company(db: Database) -> None:
    await load(db, make_full_csv(AYGUN, row(ELVIN_SHOP_1, **SHOP_COMPANY)))
    home = row(ELVIN_SHOP_1, kind="residential", metering_point="")
    report = await load(db, make_csv(AYGUN, home), max_deactivate=None)  # no company column at all
    assert report.accounts_changed == 1
    stored = await account(db, ELVIN_SHOP_1["code"])
    assert (stored.kind, stored.company, stored.voen) == ("residential", None, None)


@pytest.mark.parametrize(
    "header",
    [
        f"{HEADER},voen,company",  # the wrong order
        f"{HEADER},company,company",
        f"{HEADER},company,voen,extra",
        f"company,voen,{HEADER}",
    ],
)
async def test_a_header_with_the_optional_columns_out_of_place_is_refused(db: Database, header: str) -> None:
    errors = await refused(db, make_csv(header=header))
    assert [(e.line, e.reason) for e in errors] == [
        (1, f"the header must be: {HEADER}, optionally followed by company and/or voen")
    ]


async def test_a_spaced_header_with_the_optional_columns_is_accepted(db: Database) -> None:
    header = " FIN , Full_Name ,phone,kind,code,metering_point,address,region, Company , VÖEN "
    data = make_csv(line(row(ELVIN_SHOP_1, **SHOP_COMPANY), FULL_COLUMNS), header=header)
    errors = await refused(db, data)  # VÖEN with Ö is not the column's name
    assert [e.line for e in errors] == [1]
    header = header.replace("VÖEN", "Voen")
    data = make_csv(line(row(ELVIN_SHOP_1, **SHOP_COMPANY), FULL_COLUMNS), header=header)
    await load(db, data)
    assert (await account(db, ELVIN_SHOP_1["code"])).voen == SHOP_COMPANY["voen"]


async def test_a_row_of_a_full_file_needs_ten_fields(db: Database) -> None:
    errors = await refused(db, make_csv(line(AYGUN), header=FULL_HEADER))
    assert [(e.line, e.reason) for e in errors] == [(2, "expected 10 fields, found 8")]


# --- the command line ---------------------------------------------------------------------------------


def run_import(tmp_path: Path, file: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_isiqbot(tmp_path, "registry", "import", str(file), *flags, env=isiqbot_env(tmp_path, "x.db"))


async def fins_in(tmp_path: Path) -> list[str]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with db.transaction() as session:
            return list((await session.scalars(select(Person.fin).order_by(Person.fin))).all())
    finally:
        await db.dispose()


async def test_cli_imports_a_good_file(tmp_path: Path) -> None:
    file = tmp_path / "registry.csv"
    file.write_bytes(make_csv(*BASE))
    done = run_import(tmp_path, file)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{file}: imported 3 persons, 4 accounts, 2 metering points",
        "  persons: 3 added, 0 changed",
        "  accounts: 4 added, 0 changed, 0 deactivated",
        "  metering points: 2 added, 0 changed, 0 deactivated",
    ]
    assert sorted(await fins_in(tmp_path)) == sorted({r["fin"] for r in BASE})

    # A refresh: Ramil and one of Aygün's accounts go (2 of 4 accounts, allowed), her phone changes.
    file.write_bytes(make_csv(row(AYGUN, phone="+994501234568"), ELVIN_SHOP_1, ELVIN_SHOP_2))
    done = run_import(tmp_path, file, "--allow-deactivate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{file}: imported 2 persons, 2 accounts, 2 metering points",
        "  persons: 0 added, 1 changed",
        "  accounts: 0 added, 0 changed, 2 deactivated",
        "  metering points: 0 added, 0 changed, 0 deactivated",
    ]


async def test_cli_refuses_a_bad_file_and_names_each_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(
        make_csv(
            NIGAR,  # 2: good, but must not land
            row(AYGUN, fin="AZ4K7I2"),  # 3
            ELVIN_SHOP_1,  # 4: good, but must not land
            row(RAMIL, phone="+994124987654"),  # 5
        )
    )
    done = run_import(tmp_path, bad)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "nothing was imported" in done.stderr and "2 problem(s)" in done.stderr
    assert "line 3: bad FİN" in done.stderr
    assert "line 5: bad phone" in done.stderr
    assert "imported" not in done.stdout

    good = tmp_path / "good.csv"
    good.write_bytes(make_csv(AYGUN, RAMIL))
    done = run_import(tmp_path, good)
    assert done.returncode == 0, done.stderr
    assert f"{good}: imported 2 persons, 2 accounts, 0 metering points\n" in done.stdout
    assert "  accounts: 2 added, 0 changed, 0 deactivated\n" in done.stdout
    assert await fins_in(tmp_path) == sorted([AYGUN["fin"], RAMIL["fin"]])  # no Nigar, no shop


async def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    done = run_import(tmp_path, tmp_path / "yoxdur.csv")
    assert done.returncode == 2
    assert "yoxdur.csv" in done.stderr
    done = run_import(tmp_path, tmp_path)  # a folder is not a file either
    assert done.returncode == 2


@pytest.mark.parametrize("name", ["Əliyev\u202e Rəşad", "Əliyev\u200b Rəşad"])
async def test_invisible_formatting_characters_are_refused(db: Database, name: str) -> None:
    errors = await refused(db, make_csv(AYGUN, row(NIGAR, full_name=name)))
    assert [e.line for e in errors] == [3] and "invisible formatting" in errors[0].reason


async def test_kind_in_capitals_is_accepted(db: Database) -> None:
    await load(db, make_csv(row(AYGUN, kind="Residential")))
    assert (await account(db, AYGUN["code"])).kind == "residential"


async def test_a_flood_of_bad_lines_is_cut_with_a_note(db: Database) -> None:
    bad = [row(AYGUN, fin="BAD", code=f"{400500600700800 + n}") for n in range(registry.MAX_ERRORS + 50)]
    errors = await refused(db, make_csv(*bad))
    assert len(errors) == registry.MAX_ERRORS + 1
    assert "stopped after" in errors[-1].reason


# --- a national registry: read as a stream, checked and staged in batches ----------------------------------

MAIN_OWNER = {"fin": "MA1N007", "full_name": "Rzayev Kamran Elçin oğlu", "phone": "+994551112233"}
MAIN_CODE = "5000000001"


def many(count: int) -> list[dict[str, str]]:
    """`count` rows, row n on line n + 2: two residential accounts a person, and every tenth row a
    metering point of one main code."""
    rows = []
    for n in range(count):
        if n % 10 == 9:
            point = {"kind": "non_residential", "code": MAIN_CODE, "metering_point": f"MP-{n:04d}"}
            where = {"address": f"Bakı şəhəri, Xətai rayonu, anbar {n}", "region": "Xətai"}
            rows.append(MAIN_OWNER | point | where)
            continue
        person = {
            "fin": f"{n // 2:07d}",
            "full_name": f"Əliyev Vüqar {n // 2}",
            "phone": f"+99450{n // 2:07d}",
        }
        where = {"address": f"Gəncə şəhəri, Nizami küçəsi {n}", "region": "Gəncə"}
        rows.append(person | where | {"kind": "residential", "code": f"{10**14 + n}", "metering_point": ""})
    return rows


def many_report(count: int) -> tuple[int, int, int]:
    """How many persons, accounts and metering points `many(count)` holds."""
    rows = many(count)
    return (
        len({r["fin"] for r in rows}),
        len({r["code"] for r in rows}),
        sum(bool(r["metering_point"]) for r in rows),
    )


async def test_a_bad_line_deep_in_many_batches_changes_nothing(db: Database) -> None:
    rows = many(500)
    rows[311] = row(rows[311], phone="+994124987654")  # line 313, in the 20th batch of 16 rows
    expected = [(313, "bad phone: not a valid Azerbaijani mobile number")]
    assert [(e.line, e.reason) for e in await refused(db, make_csv(*rows), batch_rows=16)] == expected
    assert await counts(db) == (0, 0, 0)  # the batches before the bad line did not land

    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    assert [(e.line, e.reason) for e in await refused(db, make_csv(*rows), batch_rows=16)] == expected
    assert await snapshot(db) == before


async def test_rows_are_checked_against_the_rows_of_earlier_batches(db: Database) -> None:
    rows = [row(r, **SHOP_COMPANY) if r["metering_point"] else r for r in many(60)]  # lines 2-61
    other_owner = {k: rows[40][k] for k in ("fin", "full_name", "phone")}
    late = [
        row(rows[0], full_name="Əliyev Vüqar Rauf oğlu", code="100000000009999"),  # 62
        rows[20],  # 63: line 22 again
        row(rows[30], **other_owner),  # 64: the code of line 32, another owner
        row(rows[30], **other_owner),  # 65: the same: line 64 was refused, line 32 still holds the code
        row(rows[19], address="Bakı şəhəri, başqa anbar"),  # 66: the metering point of line 21 again
        row(rows[9], metering_point="MP-9999", company="Başqa Şirkət MMC"),  # 67
        row(rows[9], kind="residential", metering_point="", company="", voen=""),  # 68
        row(rows[2], phone="+994501111111", code="100000000008888"),  # 69: the FİN of line 4
        row(rows[0], code="100000000007777"),  # 70: good
    ]
    code_30 = rows[30]["code"]
    expected = [
        (62, "FİN 00***** has another name or phone on an earlier line"),
        (63, f"duplicate subscriber code {rows[20]['code']} (line 22)"),
        (64, f"duplicate code {code_30} with another owner (line 32)"),
        (65, f"duplicate code {code_30} with another owner (line 32)"),
        (66, f"duplicate metering point MP-0019 of {MAIN_CODE} (line 21)"),
        (67, f"code {MAIN_CODE} has another company or VÖEN on line 11"),
        (68, f"code {MAIN_CODE} is non_residential on line 11"),
        (69, "FİN 00***** has another name or phone on an earlier line"),
    ]
    data = make_full_csv(*rows, *late)
    for batch_rows in (1, 3, 16, registry.BATCH_ROWS):
        errors = await refused(db, data, batch_rows=batch_rows)
        assert [(e.line, e.reason) for e in errors] == expected, batch_rows
    assert await counts(db) == (0, 0, 0)


@pytest.mark.parametrize("good_after", [0, 1, 2], ids=["none", "one", "two"])
async def test_the_cut_after_max_errors_falls_where_it_did_whatever_the_batch(
    db: Database, good_after: int
) -> None:
    bad = [row(AYGUN, fin="BAD", code=f"{400500600700800 + n}") for n in range(registry.MAX_ERRORS)]
    good = [row(NIGAR, code=f"{400500600700900 + n}") for n in range(good_after)]
    data = make_csv(*bad, *good)
    expected = await refused(db, data)
    assert [e.line for e in expected[: registry.MAX_ERRORS]] == list(range(2, registry.MAX_ERRORS + 2))
    # The first record after the last problem counted says where reading stopped; without one, nothing.
    stop = registry.LineError(
        registry.MAX_ERRORS + 2, "stopped after 200 problems; fix these and import again"
    )
    assert expected[registry.MAX_ERRORS :] == ([stop] if good_after else [])
    for batch_rows in (1, 7, registry.MAX_ERRORS, registry.MAX_ERRORS + 1):
        assert await refused(db, data, batch_rows=batch_rows) == expected, batch_rows


async def test_a_refresh_in_many_batches_deactivates_what_the_file_drops(db: Database) -> None:
    rows = many(500)
    persons, accounts, points = many_report(500)
    first = await load(db, make_csv(*rows), batch_rows=16)
    assert first == ImportReport(
        persons=persons,
        accounts=accounts,
        metering_points=points,
        persons_added=persons,
        accounts_added=accounts,
        metering_points_added=points,
    )
    before = await snapshot(db)

    dropped = [r for n, r in enumerate(rows) if n % 25 in (4, 19)]
    dropped_codes = {r["code"] for r in dropped if not r["metering_point"]}
    dropped_points = {r["metering_point"] for r in dropped if r["metering_point"]}
    assert len(dropped_codes) == 20 and len(dropped_points) == 20
    kept = [r for n, r in enumerate(rows) if n % 25 not in (4, 19)]
    home = next(n for n, r in enumerate(kept) if n > 100 and not r["metering_point"])
    shop = next(n for n, r in enumerate(kept) if n > 100 and r["metering_point"])
    kept[home] = row(kept[home], address="Gəncə şəhəri, Atatürk prospekti 1")  # a residential account moves
    kept[shop] = row(kept[shop], address="Bakı şəhəri, Xətai rayonu, yeni anbar")  # a metering point too
    error = await too_many(db, make_csv(*kept), max_deactivate=4)  # 20 of 451: 4.43%
    assert (error.active, error.deactivating) == (accounts, len(dropped_codes))
    assert await snapshot(db) == before

    report = await load(db, make_csv(*kept), max_deactivate=None, batch_rows=16)
    assert report == ImportReport(
        persons=len({r["fin"] for r in kept}),
        accounts=accounts - len(dropped_codes),
        metering_points=points - len(dropped_points),
        accounts_changed=1,
        accounts_deactivated=len(dropped_codes),
        metering_points_changed=1,
        metering_points_deactivated=len(dropped_points),
    )
    assert await counts(db) == (persons, accounts, points)  # nothing is deleted
    async with db.transaction() as session:
        inactive = set((await session.scalars(select(Account.code).where(~col(Account.active)))).all())
        gone = select(MeteringPoint.code).where(~col(MeteringPoint.active))
        inactive_points = set((await session.scalars(gone)).all())
    assert (inactive, inactive_points) == (dropped_codes, dropped_points)

    back = await load(db, make_csv(*rows), batch_rows=16)  # everything as it was: active again
    assert (back.accounts_changed, back.metering_points_changed, back.deactivated) == (
        len(dropped_codes) + 1,
        len(dropped_points) + 1,
        0,
    )
    assert await snapshot(db) == before  # the same rows, the same ids


async def test_a_file_on_disk_is_read_by_its_path_or_as_an_open_file(db: Database, tmp_path: Path) -> None:
    file = tmp_path / "registry.csv"
    file.write_bytes(make_csv(*BASE))
    assert (await load(db, file)).persons_added == 3
    with file.open("rb") as opened:
        assert await load(db, opened) == ImportReport(persons=3, accounts=4, metering_points=2)

    file.write_bytes(make_csv(AYGUN, row(NIGAR, fin="7TRO2HJ"), RAMIL))
    errors = await refused(db, file)
    assert [(e.line, e.reason[:7]) for e in errors] == [(3, "bad FİN")]


async def test_where_the_file_is_cut_into_chunks_changes_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BOM, CRLF, a lone CR, letters of two and three bytes: each may be cut between two reads."""
    good = b"\xef\xbb\xbf" + make_full_csv(AYGUN, row(ELVIN_SHOP_1, company="Babayev Ticarət MMC"), RAMIL)
    good = good.replace(b"\n", b"\r\n") + b"\r\n"
    bad = make_csv(
        AYGUN,  # 2
        row(NIGAR, address="Şəki şəhəri,\rNizami küçəsi 19"),  # 3, and its quoted CR ends line 3
        row(RAMIL, address="Gəncə şəhəri,\r\nmənzil 22"),  # 5, on lines 5 and 6
        row(ELVIN_SHOP_1, fin="5RT8JKİ"),  # 7: İ has two bytes
        end="\r",
    )
    expected = await refused(db, bad)
    assert [e.line for e in expected] == [3, 5, 7]
    for chunk in (1, 2, 3, 4, 5, 7, 64):
        monkeypatch.setattr(registry, "_CHUNK_BYTES", chunk)
        assert await refused(db, bad) == expected, chunk
        report = await load(db, good)
        assert (report.persons, report.accounts, report.metering_points) == (3, 3, 1), chunk
    assert (await account(db, ELVIN_SHOP_1["code"])).company == "Babayev Ticarət MMC"
    assert (await person(db, AYGUN["fin"])).full_name == AYGUN["full_name"]


def not_utf8_at(data: bytes) -> int:
    """Where decoding the whole file fails: the byte the import must name."""
    with pytest.raises(UnicodeDecodeError) as caught:
        data.decode("utf-8-sig")
    return caught.value.start


@pytest.mark.parametrize(
    "data",
    [
        make_csv(AYGUN, row(NIGAR, fin="BAD"), RAMIL) + b"\xff" + make_csv(NIGAR),  # after a bad line
        b"\xef\xbb\xbf" + make_csv(AYGUN, RAMIL).replace(b"Ramil", b"Ram\xc9\x99\xc9l"),  # ə, half an ə
        make_csv(AYGUN, RAMIL)[:-3] + "ə".encode()[:1],  # a letter cut short at the very end
        make_csv(AYGUN, header="fin,name") + b"\xe2\x82",  # a bad header, then bad bytes
    ],
    ids=["after-a-bad-line", "cut-letter", "cut-at-the-end", "after-a-bad-header"],
)
async def test_a_file_that_is_not_utf8_further_on_is_refused_as_that(
    db: Database, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    await load(db, make_csv(*BASE))
    before = await snapshot(db)
    expected = [(0, f"the file is not UTF-8 (byte {not_utf8_at(data)})")]
    for chunk in (1, 2, 3, 5, 64, 1 << 20):
        monkeypatch.setattr(registry, "_CHUNK_BYTES", chunk)
        assert [(e.line, e.reason) for e in await refused(db, data)] == expected, chunk
    assert await snapshot(db) == before


async def test_imports_refused_and_done_in_one_transaction(db: Database) -> None:
    """The staging tables of one import do not stand in the way of the next in the same transaction."""
    async with db.transaction() as session:
        with pytest.raises(RegistryImportError):
            await registry.import_csv(session, make_csv(row(AYGUN, fin="BAD")))
        first = await registry.import_csv(session, make_csv(*BASE))
        second = await registry.import_csv(session, make_csv(*BASE))
    assert (first.persons_added, first.accounts_added, first.metering_points_added) == (3, 4, 2)
    assert second == ImportReport(persons=3, accounts=4, metering_points=2)
    assert await counts(db) == (3, 4, 2)
