"""The migrations tested both ways, on SQLite and PostgreSQL: a stairway (each revision up, down, up
again), all the way down and up again, and the models agreeing with what the migrations build.

Each test gets a fresh database from the `db_url` fixture (a temporary SQLite file; a new PostgreSQL
database, dropped at the end, so tests running at the same time against `test` are not disturbed), and
reaches it through the engine the service itself uses: SQLite with foreign keys on, as in production.
The tables hold a row each while the stairway runs, since a step down that works on an empty database
can still fail on a real one (SQLite copies a table to drop a column, and a referenced table's rows
keep it from being dropped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on the metadata)
from storage.db import Database
from storage.migrate import config, upgrade

SCRIPTS = ScriptDirectory.from_config(config("sqlite://"))
REVISIONS = [script.revision for script in reversed(list(SCRIPTS.walk_revisions()))]
HEAD = SCRIPTS.get_current_head()
MODEL_TABLES = set(SQLModel.metadata.tables)

_T = "'2026-11-27 09:00:00+00:00'"
# One row per table, parents first, with only the columns of the revision that created the table (the
# columns added later are all nullable): {table: (columns, values)}. A table that is not listed stays empty.
SEED = {
    "person": ("id, fin, full_name, phone", "1, '1AB2CD3', 'Ad Soyad', '+994501234567'"),
    "account": (
        "id, code, kind, person_id, address, region, active",
        "1, '1234567890', 'non_residential', 1, 'Bakı', 'Bakı', true",
    ),
    "metering_point": ("id, account_id, code, address, region, active", "1, 1, 'MP-1', 'Bakı', 'Bakı', true"),
    "application": (
        "id, number, channel, user_key, applicant_phone, lang, person_id, account_id, kind, account_code, "
        "metering_point_id, reason, description, mobile, extra_phones, status, created_at, updated_at",
        "1, '2026-000001', 'telegram', '42', '+994501234567', 'az', 1, 1, 'non_residential', '1234567890', "
        f"1, 'no_power', 'İşıq yoxdur', '+994501234567', '[]', 'new', {_T}, {_T}",
    ),
    "notification": (
        "id, application_id, channel, user_key, lang, kind, payload, state, attempts, created_at",
        f"1, 1, 'telegram', '42', 'az', 'registered', '{{}}', 'queued', 0, {_T}",
    ),
    "status_change": (
        "id, application_id, old_status, new_status, actor, created_at",
        f"1, 1, NULL, 'new', 'telegram:42', {_T}",
    ),
    "conversation": (
        "id, channel, user_key, step, lang, state, updated_at",
        f"1, 'telegram', '42', 'menu', 'az', '', {_T}",
    ),
    "processed_update": ("channel, update_id, created_at", f"'telegram', '1', {_T}"),
    "application_counter": ("year, last", "2026, 1"),
    "otp_request": ("id, phone, requester, created_at", f"1, '+994501234567', 'telegram:42', {_T}"),
    "linked_message": (
        "channel, chat_id, message_id, application_id, kind, created_at",
        f"'telegram', '-100', '7', 1, 'card', {_T}",
    ),
    "staff_action": (
        "id, application_id, chat_id, user_id, user_name, action, allowed, created_at",
        f"1, 1, -100, 5000000000, 'Operator', 'take', true, {_T}",
    ),
    "staff_thread": ("application_id, chat_id, created_at", f"1, -100, {_T}"),
    "lease": ("name, holder, expires_at", f"'metrics', 'host:1', {_T}"),
    "rating": (
        "application_id, stars, comment, channel, user_key, created_at",
        f"1, 2, 'Gec gəldilər', 'telegram', '42', {_T}",
    ),
    "visit": (
        "application_id, windows, proposed_by, proposed_at, chosen, chosen_start",
        f"1, '[[\"2026-12-02T06:00:00+00:00\", \"2026-12-02T08:00:00+00:00\"]]', 'Operator', {_T}, 0, {_T}",
    ),
}


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine of a fresh, empty database (no migration run yet)."""
    database = Database(db_url)
    try:
        yield database.engine
    finally:
        await database.dispose()


async def _downgrade(engine: AsyncEngine, revision: str) -> None:
    """`alembic downgrade`, on a connection handed over as storage.migrate hands it for an upgrade."""

    def run(connection: Connection) -> None:
        cfg = config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def _seed(engine: AsyncEngine) -> None:
    """A row in each empty table that SEED knows."""
    async with engine.begin() as connection:
        tables = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
        for table, (columns, values) in SEED.items():
            if table in tables and not (await connection.execute(text(f"SELECT 1 FROM {table}"))).first():
                await connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"))


def _schema(connection: Connection) -> dict[str, Any]:
    """What the database holds, as the inspector reflects it: tables, columns, keys, indexes, rows."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue  # its row is the version, compared on its own
        schema[table] = {
            "columns": sorted(
                (c["name"], c["type"].compile(dialect=connection.dialect), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ),
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    tuple(sorted(fk.get("options", {}).items())),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (
                    ix["name"],
                    tuple(ix["column_names"]),
                    bool(ix["unique"]),
                    tuple(sorted((k, str(v)) for k, v in ix.get("dialect_options", {}).items())),
                )
                for ix in inspector.get_indexes(table)
            ),
            "unique constraints": sorted(
                (uc["name"] or "", tuple(uc["column_names"]))
                for uc in inspector.get_unique_constraints(table)
            ),
            "rows": connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one(),
        }
    return schema


async def _state(engine: AsyncEngine) -> tuple[str | None, dict[str, Any]]:
    """The revision alembic records, and the schema."""
    async with engine.connect() as connection:
        version = await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        return version, await connection.run_sync(_schema)


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


def _unlike(got: tuple[str | None, dict[str, Any]], expected: tuple[str | None, dict[str, Any]]) -> str:
    """Where two states differ, readably."""
    lines = [f"version {got[0]}, expected {expected[0]}"] if got[0] != expected[0] else []
    for table in sorted(set(got[1]) | set(expected[1])):
        if table not in expected[1] or table not in got[1]:
            lines.append(f"{table}: {'left over' if table in got[1] else 'missing'}")
            continue
        for aspect, wanted in expected[1][table].items():
            found = got[1][table][aspect]
            if found == wanted:
                continue
            if isinstance(wanted, list):
                extra = [item for item in found if item not in wanted]
                missing = [item for item in wanted if item not in found]
                lines.append(f"{table} {aspect}: extra {extra}, missing {missing}")
            else:
                lines.append(f"{table} {aspect}: {found!r}, expected {wanted!r}")
    return "\n".join(lines)


@pytest.mark.parametrize("revision", REVISIONS)
async def test_stairway(engine: AsyncEngine, revision: str) -> None:
    """Up to `revision`, one step down, up again: the step down restores exactly what was before it, rows
    included, and the step up builds the same again; then on to head."""
    previous = SCRIPTS.get_revision(revision).down_revision
    assert previous is None or isinstance(previous, str), "the stairway expects one line of revisions"
    if previous is not None:
        await upgrade(engine, previous)
        await _seed(engine)
    before = await _state(engine)
    assert before[0] == previous

    await upgrade(engine, revision)
    await _seed(engine)  # the tables this revision creates
    after = await _state(engine)
    assert after[0] == revision
    assert after[1] != before[1], f"{revision} changed nothing"

    await _downgrade(engine, "-1")
    down = await _state(engine)
    assert down == before, f"downgrading {revision} did not restore {previous}:\n{_unlike(down, before)}"

    await upgrade(engine, revision)
    await _seed(engine)  # the tables the step down dropped, and the step up made again
    again = await _state(engine)
    assert again == after, f"{revision} built something else the second time:\n{_unlike(again, after)}"

    await upgrade(engine)
    assert (await _state(engine))[0] == HEAD
    assert await _tables(engine) == MODEL_TABLES | {"alembic_version"}


async def test_0018_counts_the_deadlines_of_an_application_reopened_before_from_its_reopening(
    engine: AsyncEngine,
) -> None:
    await upgrade(engine, "0017")
    await _seed(engine)
    reopened_at = "'2026-11-29 10:00:00+00:00'"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO status_change (id, application_id, old_status, new_status, actor, created_at) "
                f"VALUES (2, 1, 'completed', 'reopened', 'subscriber:telegram', {reopened_at})"
            )
        )
        await connection.execute(text("UPDATE application SET status = 'reopened' WHERE id = 1"))
    await upgrade(engine, "0018")
    async with engine.begin() as connection:
        same = (
            await connection.execute(
                text(
                    "SELECT deadlines_from = (SELECT created_at FROM status_change WHERE id = 2)"
                    " FROM application"
                )
            )
        ).scalar_one()
    assert same in (True, 1)


async def test_all_the_way_down_and_up_again(engine: AsyncEngine) -> None:
    await upgrade(engine)
    head = await _state(engine)
    assert head[0] == HEAD
    assert await _tables(engine) == MODEL_TABLES | {"alembic_version"}
    await _seed(engine)
    seeded = (await _state(engine))[1]
    assert {table for table, held in seeded.items() if held["rows"]} == MODEL_TABLES & set(SEED)

    await _downgrade(engine, "base")
    assert (await _state(engine))[0] is None
    assert await _tables(engine) == {"alembic_version"}  # every table gone, only alembic's own left

    await upgrade(engine)
    again = await _state(engine)
    assert again == head, _unlike(again, head)


async def test_the_models_agree_with_the_migrations(engine: AsyncEngine) -> None:
    """What autogenerate would write for the models against head: nothing, on either database, with no
    difference filtered out. (Blind spots of the comparison: SQLite keeps no time zone, so a DateTime's
    `timezone` shows only on PostgreSQL; a partial index's WHERE is not compared at all.)"""

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, SQLModel.metadata)

    await upgrade(engine)
    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []
