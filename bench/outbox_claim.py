"""How long the outbox's claim takes with a long queue: one worker, then several claiming at once.

Run from the project folder:

    .venv/bin/python -m bench.outbox_claim                    # a temporary SQLite file, 100 000 rows
    .venv/bin/python -m bench.outbox_claim --database postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        --rows 1000000

On PostgreSQL the named database is only where it connects: it creates a database of its own on that
server (`bench_outbox_<pid>`), migrates it and drops it at the end (`--keep` leaves it, to EXPLAIN by
hand). It queues `--rows` notifications across about rows/3 lanes (60 % Telegram chats, 25 % SMS
phones, 15 % application threads of five staff chats), 5 % of lanes with a head waiting for its retry
an hour from now, written with COPY (SQLite: executemany). Then it prints:

- `claim`: median, p95 and max milliseconds of one claim of `--batch` rows over `--claims` claims,
  of the `claim()` call, and of its whole transaction (as a worker takes it: BEGIN, claim, COMMIT);
  after each, untimed, its rows are marked sent, so the next claim takes the next heads;
- `fan-out`: `--workers` claimers at once, `--claims` claims each (claim, then mark sent): claims/s,
  rows/s, and two counts that must be 0: rows claimed twice, and rows claimed while an older row of
  their lane was not sent yet (a lane out of order).

`--claim FILE.py:function` measures another claim of the same signature, e.g. a copy of an earlier
one, on the schema of `--revision` (an Alembic revision; the default is the newest). Nothing here is
asserted: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Notification

Claim = Callable[[AsyncSession, Collection[str], datetime, timedelta, int], Awaitable[list[Notification]]]

CHANNELS = ("telegram", outbox.SMS, outbox.STAFF)
STAFF_CHATS = 5
LEASE = timedelta(seconds=20)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

NOTIFICATION_COLUMNS = (
    "id",
    "application_id",
    "channel",
    "user_key",
    "lang",
    "kind",
    "payload",
    "state",
    "attempts",
    "created_at",
    "next_attempt_at",
)
APPLICATION_COLUMNS = (
    "id",
    "number",
    "channel",
    "user_key",
    "applicant_phone",
    "lang",
    "kind",
    "account_code",
    "reason",
    "description",
    "mobile",
    "extra_phones",
    "status",
    "created_at",
    "updated_at",
)


def load_claim(spec: str | None) -> Claim:
    if not spec:
        return outbox.claim
    path, _, name = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("bench_other_claim", path)
    assert module_spec is not None and module_spec.loader is not None, path
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    found: Claim = getattr(module, name or "claim")
    return found


def queue(rows: int, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[int]]:
    """The notifications, the applications the staff lanes belong to, and each row's lane (by id)."""
    rng = random.Random(seed)  # noqa: S311 (a repeatable queue, not a secret)
    lanes = max(1, rows // 3)
    waiting = set(rng.sample(range(lanes), lanes // 20))  # their heads wait for a retry
    applications: list[tuple[Any, ...]] = []
    notifications: list[tuple[Any, ...]] = []
    lane_of = [0] * (rows + 1)
    seen: set[int] = set()
    start = NOW - timedelta(hours=2)
    payload = json.dumps({"key": "notify.status", "params": {"number": "A-1"}})
    for row_id in range(1, rows + 1):
        lane = rng.randrange(lanes)
        lane_of[row_id] = lane
        created = start + timedelta(milliseconds=row_id * 7_200_000 // rows)
        due = created
        if lane not in seen:
            seen.add(lane)
            if lane in waiting:
                due = NOW + timedelta(hours=1)
        kind = lane % 20
        application_id = None
        if kind < 12:
            channel, user_key = "telegram", str(10_000_000 + lane)
        elif kind < 17:
            channel, user_key = outbox.SMS, f"+99450{lane:07d}"
        else:
            channel, user_key = outbox.STAFF, str(-1_000_000_000_000 - lane % STAFF_CHATS)
            application_id = lane + 1
        notifications.append(
            (row_id, application_id, channel, user_key, "az", "status", payload, "queued", 0, created, due)
        )
    for lane in sorted(seen):
        if lane % 20 >= 17:
            phone = f"+99450{lane:07d}"
            application = (lane + 1, f"B-{lane + 1}", "telegram", str(lane), phone, "az", "residential")
            applications.append((*application, "1", "no_power", "-", phone, "[]", "registered", start, start))
    return notifications, applications, lane_of


async def load_postgres(
    url: str, notifications: list[tuple[Any, ...]], applications: list[tuple[Any, ...]]
) -> None:
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await connection.copy_records_to_table(
            "application", records=applications, columns=APPLICATION_COLUMNS
        )
        await connection.copy_records_to_table(
            "notification", records=notifications, columns=NOTIFICATION_COLUMNS
        )
        for table in ("application", "notification"):
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
            )
        await connection.execute("VACUUM ANALYZE notification")
        await connection.execute("ANALYZE application")
    finally:
        await connection.close()


def load_sqlite(path: str, notifications: list[tuple[Any, ...]], applications: list[tuple[Any, ...]]) -> None:
    stamp = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert stamp is not None

    def stamped(rows: list[tuple[Any, ...]], at: Sequence[int]) -> list[tuple[Any, ...]]:
        return [tuple(stamp(v) if i in at else v for i, v in enumerate(row)) for row in rows]

    connection = sqlite3.connect(path)
    try:
        for table, columns, rows, at in (
            ("application", APPLICATION_COLUMNS, applications, (13, 14)),
            ("notification", NOTIFICATION_COLUMNS, notifications, (9, 10)),
        ):
            marks = ", ".join("?" for _ in columns)
            connection.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 (our own names)
                stamped(rows, at),
            )
        connection.commit()  # no ANALYZE: the service never runs it on SQLite, so its planner guesses
    finally:
        connection.close()


async def mark_sent(db: Database, ids: list[int]) -> None:
    if ids:
        async with db.transaction() as session:
            query = update(Notification).where(Notification.id.in_(ids))  # type: ignore[union-attr]
            await session.execute(query.values(state=outbox.SENT, sent_at=NOW, claimed_at=None))


async def one_claim(db: Database, claim: Claim, batch: int) -> tuple[list[int], float]:
    """A worker's claim, a transaction of its own: the ids, and how long `claim()` itself took."""
    async with db.transaction() as session:
        started = time.perf_counter()
        rows = await claim(session, CHANNELS, NOW, LEASE, batch)
        return [row.id for row in rows if row.id is not None], time.perf_counter() - started


def ms(seconds: float) -> float:
    return seconds * 1000


def figures(times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) > 1 else times[0]
    return f"median {ms(statistics.median(times)):.2f} ms, p95 {ms(p95):.2f} ms, max {ms(max(times)):.2f} ms"


async def alone(db: Database, claim: Claim, claims: int, batch: int) -> set[int]:
    """Claims one after the other; returns the ids it sent."""
    calls: list[float] = []
    transactions: list[float] = []
    sent = set((await one_claim(db, claim, batch))[0])  # warms the caches and the statement cache
    await mark_sent(db, list(sent))
    for _ in range(claims):
        started = time.perf_counter()
        ids, call = await one_claim(db, claim, batch)
        transactions.append(time.perf_counter() - started)
        calls.append(call)
        sent.update(ids)
        await mark_sent(db, ids)
    print(f"claim        {claims} claims of up to {batch}: {(len(sent) - batch) / claims:.1f} rows each")
    print(f"  claim()    {figures(calls)}")
    print(f"  with BEGIN and COMMIT  {figures(transactions)}")
    return sent


async def fan_out(
    db: Database, claim: Claim, workers: int, claims: int, batch: int, lane_of: list[int], sent: set[int]
) -> None:
    claimed_by: dict[int, float] = {}  # id: when the claim that took it had committed (at the latest)
    sending_from: dict[int, float] = {}  # id: when its marking as sent began (at the earliest)
    times: list[float] = []
    rows = 0

    async def worker() -> None:
        nonlocal rows
        for _ in range(claims):
            ids, call = await one_claim(db, claim, batch)
            done = time.perf_counter()
            times.append(call)
            rows += len(ids)
            for row_id in ids:
                claimed_by.setdefault(row_id, done)
            marking = time.perf_counter()
            for row_id in ids:
                sending_from.setdefault(row_id, marking)
            await mark_sent(db, ids)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    twice = rows - len(claimed_by)
    lanes: dict[int, list[int]] = {}
    for row_id, lane in enumerate(lane_of):
        if row_id:
            lanes.setdefault(lane, []).append(row_id)
    out_of_order = 0
    for row_id, taken in claimed_by.items():
        for older in lanes[lane_of[row_id]]:
            if older >= row_id or older in sent:
                continue
            if older not in sending_from or taken < sending_from[older]:  # taken while `older` was unsent
                out_of_order += 1
    print(
        f"fan-out      {workers} workers x {claims} claims: {len(times) / elapsed:.0f} claims/s, "
        f"{rows / elapsed:.0f} rows/s, claim() median {ms(statistics.median(times)):.2f} ms; "
        f"claimed twice {twice}, taken before an older row of the lane was sent {out_of_order}"
    )


async def main(args: argparse.Namespace) -> None:
    claim = load_claim(args.claim)
    started = time.perf_counter()
    notifications, applications, lane_of = queue(args.rows)
    made = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        admin_url = args.database
        name = f"bench_outbox_{os.getpid()}"
        if admin_url:
            admin_dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(False)
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            url = make_url(admin_url).set(database=name).render_as_string(False)
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        try:
            await upgrade(db.engine, args.revision)
            started = time.perf_counter()
            if admin_url:
                await load_postgres(url, notifications, applications)
            else:
                await asyncio.to_thread(load_sqlite, str(make_url(url).database), notifications, applications)
            loaded = time.perf_counter() - started
            which = args.claim or "storage.outbox"
            print(f"backend      {db.engine.dialect.name}, schema {args.revision}, claim {which}")
            print(
                f"queue        {args.rows} queued rows in {len(set(lane_of[1:]))} lanes "
                f"(made in {made:.1f} s, loaded in {loaded:.1f} s)"
            )
            sent = await alone(db, claim, args.claims, args.batch)
            await fan_out(db, claim, args.workers, args.claims, args.batch, lane_of, sent)
        finally:
            await db.dispose()
            if admin_url and not args.keep:
                admin = await asyncpg.connect(admin_dsn)
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
            elif admin_url:
                print(f"kept         database {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database", help="a PostgreSQL URL to connect to (default: a temporary SQLite file)"
    )
    parser.add_argument("--rows", type=int, default=100_000, help="queued notifications (default 100000)")
    parser.add_argument("--claims", type=int, default=50, help="claims to time, and per fan-out worker")
    parser.add_argument("--batch", type=int, default=50, help="rows per claim (the worker's batch)")
    parser.add_argument("--workers", type=int, default=4, help="claimers at once in the fan-out run")
    parser.add_argument("--claim", help="FILE.py:function, another claim to measure (default storage.outbox)")
    parser.add_argument("--revision", default="head", help="the schema to migrate to (default head)")
    parser.add_argument(
        "--keep", action="store_true", help="PostgreSQL: leave the database, and say its name"
    )
    asyncio.run(main(parser.parse_args()))
