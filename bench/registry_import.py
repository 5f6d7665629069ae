"""How long a national billing registry takes to import, and in how much memory.

It writes N realistic, valid registry rows (1,500,000 by default: every subscriber of the country) to a
temporary CSV file, a row at a time, then imports that file with the real import code, as
`isiqbot registry import FILE` does, and prints the rows, the seconds, the rows per second and the
peak resident memory of this process. Run:

    .venv/bin/python bench/registry_import.py [--rows 1500000]
    .venv/bin/python bench/registry_import.py --database postgresql+asyncpg://postgres@127.0.0.1:5432/test

Without --database it imports into a temporary SQLite file. With a PostgreSQL URL it creates a throwaway
database `bench_registry_<pid>` on that server (the URL's own database is only used to create and drop
it) and drops it at the end. --twice imports the same file again: the daily refresh where nothing
changed. --module measures another copy of storage/registry.py (an older one, say); --bytes hands it
the file's bytes instead of its path, for an import that cannot stream. Nothing here is asserted: it
measures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import asyncpg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import registry
from storage.db import Database
from storage.migrate import upgrade

FIN_LETTERS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
MOBILE_PREFIXES = ("50", "51", "55", "70", "77", "99", "10")
MEN = ("Elvin", "Rauf", "Ramil", "Vüqar", "Orxan", "Tural", "Kamran", "Rəşad", "Samir", "Fərid", "Nicat")
WOMEN = ("Aygün", "Nigar", "Səbinə", "Günay", "Leyla", "Aysel", "Sevinc", "Könül", "Nərmin", "Ülviyyə")
SURNAMES = ("Həsənov", "Babayev", "Quliyev", "Əliyev", "Məmmədov", "İsmayılov", "Hüseynov", "Rzayev")
PLACES = (
    ("Bakı şəhəri, Nəsimi rayonu", "Nəsimi"),
    ("Bakı şəhəri, Yasamal rayonu", "Yasamal"),
    ("Bakı şəhəri, Xətai rayonu", "Xətai"),
    ("Bakı şəhəri, Binəqədi rayonu", "Binəqədi"),
    ("Sumqayıt şəhəri", "Sumqayıt"),
    ("Gəncə şəhəri", "Gəncə"),
    ("Şəki şəhəri", "Şəki"),
    ("Lənkəran şəhəri", "Lənkəran"),
    ("Mingəçevir şəhəri", "Mingəçevir"),
    ("Quba rayonu, Qırmızı Qəsəbə", "Quba"),
)
STREETS = (
    "Füzuli küçəsi",
    "Azadlıq prospekti",
    "Atatürk prospekti",
    "Nizami küçəsi",
    "Səməd Vurğun küçəsi",
    "Babək prospekti",
    "Şərifzadə küçəsi",
    "M.Ə.Rəsulzadə küçəsi",
    "Heydər Əliyev prospekti",
)
TRADES = ("Ticarət", "Çörək", "Tikinti", "Xidmət", "Qida", "Avto")


def fin(person: int) -> str:
    """A FİN of its own for every person: a bijection of the number onto 7 characters of 34."""
    value = (person * 48_271_000_019 + 77) % 34**7  # the factor is prime to 34
    out = []
    for _ in range(7):
        value, digit = divmod(value, 34)
        out.append(FIN_LETTERS[digit])
    return "".join(out)


def phone(person: int, rng: random.Random) -> str:
    prefix = MOBILE_PREFIXES[person % len(MOBILE_PREFIXES)]
    number = f"{(person * 7919 + 12345) % 10**7:07d}"
    if rng.random() < 0.1:  # some exports keep the national format
        return f"0{prefix} {number[:3]} {number[3:5]} {number[5:]}"
    return f"+994{prefix}{number}"


def full_name(rng: random.Random) -> str:
    surname, father = rng.choice(SURNAMES), rng.choice(MEN)
    if rng.random() < 0.5:
        return f"{surname}a {rng.choice(WOMEN)} {father} qızı"
    return f"{surname} {rng.choice(MEN)} {father} oğlu"


def address(rng: random.Random) -> tuple[str, str]:
    place, region = rng.choice(PLACES)
    return f"{place}, {rng.choice(STREETS)} {rng.randint(1, 220)}, mənzil {rng.randint(1, 180)}", region


def rows(count: int, seed: int = 1) -> Iterator[list[str]]:
    """`count` valid rows: mostly residential accounts, some people with several, some main codes with
    several metering points; every value is made on the fly, nothing is kept."""
    rng = random.Random(seed)  # noqa: S311 - made-up people, not secrets
    made = person = account = 0
    owner: tuple[str, str, str] = ("", "", "")
    while made < count:
        if account == 0 or rng.random() > 0.15:  # 15% of accounts belong to the previous one's owner
            person += 1
            owner = (fin(person), full_name(rng), phone(person, rng))
        account += 1
        if rng.random() < 0.06:  # a main code: a company with one or more metering points
            code = str((account * 2_654_435_761 + 13) % (9 * 10**9) + 10**9)  # prime to 9e9: unique
            company = f"{owner[1].split()[0]} {rng.choice(TRADES)} MMC"
            voen = str((account * 2_246_822_519 + 7) % (9 * 10**9) + 10**9)
            for point in range(1, min(rng.choice((1, 1, 2, 3, 5, 12)), count - made) + 1):
                where, region = address(rng)
                yield [*owner, "non_residential", code, f"MN-{point:04d}", where, region, company, voen]
                made += 1
        else:
            code = str((account * 613_651_349_217_419 + 1) % (9 * 10**14) + 10**14)  # prime to 9e14
            where, region = address(rng)
            yield [*owner, "residential", code, "", where, region, "", ""]
            made += 1


def write_file(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(registry.HEADER + registry.OPTIONAL_HEADER)
        writer.writerows(rows(count))


def load_module(path: str | None) -> ModuleType:
    if path is None:
        return registry
    spec = importlib.util.spec_from_file_location("registry_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def import_once(module: ModuleType, db: Database, file: Path, as_bytes: bool) -> float:
    started = time.perf_counter()
    source: bytes | Path = await asyncio.to_thread(file.read_bytes) if as_bytes else file
    async with db.transaction() as session:
        report = await module.import_csv(session, source, max_deactivate=None)
    seconds = time.perf_counter() - started
    print(
        f"  {seconds:.1f} s: {report.persons} persons ({report.persons_added} added, "
        f"{report.persons_changed} changed), {report.accounts} accounts ({report.accounts_added} added, "
        f"{report.accounts_changed} changed), {report.metering_points} metering points"
    )
    return seconds


async def bench(args: argparse.Namespace, file: Path, url: str) -> None:
    module = load_module(args.module)
    db = Database(url)
    try:
        await upgrade(db.engine)
        print(f"importing into {make_url(url).get_backend_name()} ({module.__file__})")
        rss_before = peak_rss_mb()
        seconds = await import_once(module, db, file, args.bytes)
        print(
            f"rows {args.rows}, seconds {seconds:.1f}, rows/s {args.rows / seconds:,.0f}, "
            f"peak RSS {peak_rss_mb():.0f} MB (before the import {rss_before:.0f} MB)"
        )
        if args.twice:
            seconds = await import_once(module, db, file, args.bytes)
            print(
                f"again (nothing changed): seconds {seconds:.1f}, rows/s {args.rows / seconds:,.0f}, "
                f"peak RSS {peak_rss_mb():.0f} MB"
            )
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--database", help="a PostgreSQL URL (a database is made there); default SQLite")
    parser.add_argument("--twice", action="store_true", help="import the same file a second time")
    parser.add_argument("--module", help="the path of another registry.py to measure")
    parser.add_argument("--bytes", action="store_true", help="pass the file's bytes, not its path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as folder:
        file = Path(folder) / "registry.csv"
        started = time.perf_counter()
        await asyncio.to_thread(write_file, file, args.rows)
        size = file.stat().st_size / 2**20
        print(f"wrote {args.rows} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
        if not args.database:
            await bench(args, file, f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
            return
        name = f"bench_registry_{os.getpid()}"
        admin = await asyncpg.connect(admin_dsn(args.database))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = make_url(args.database).set(database=name).render_as_string(hide_password=False)
                await bench(args, file, url)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
