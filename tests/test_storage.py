"""Storage on SQLite and PostgreSQL: numbers, exactly-once registration and updates, row locks, schema."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel, func, select

from bot.core.service import Conversations
from dialogs.events import Text
from dialogs.ports import ApplicationDraft, Subscriber
from dialogs.state import State, Step
from storage import applications, conversations, registry
from storage.db import Database
from storage.migrate import config, upgrade
from storage.models import Application, ProcessedUpdate
from tests.chat import LANDLORD, PLAIN, Chat, SmsRecorder, fill_residential, identify

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


async def test_migrations_match_the_models(db: Database) -> None:
    def diff(connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)

    async with db.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_migrate_twice_is_harmless(db: Database) -> None:
    await upgrade(db.engine)
    await upgrade(db.engine)
    async with db.engine.connect() as connection:
        version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    head = ScriptDirectory.from_config(config(str(db.engine.url))).get_current_head()
    assert version == head and head is not None and head >= "0004"


async def test_company_and_voen_go_back_and_come_again(sample_db: Database) -> None:
    """0008 downgrades with the registry loaded (SQLite copies the table) and upgrades again."""

    def account_columns(connection: Connection) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns("account")}

    def downgrade(connection: Connection) -> None:
        cfg = config(sample_db.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0007")

    async with sample_db.engine.begin() as connection:
        assert {"company", "voen"} <= await connection.run_sync(account_columns)
        await connection.run_sync(downgrade)
        assert not {"company", "voen"} & await connection.run_sync(account_columns)
        assert (await connection.execute(text("SELECT count(*) FROM account"))).scalar_one() == 43
    await upgrade(sample_db.engine)
    async with sample_db.transaction() as session:
        report = await registry.import_csv(session, registry.SAMPLE_CSV.read_bytes())
    assert (report.accounts, report.accounts_added, report.accounts_changed) == (43, 0, 6)  # companies again
    async with sample_db.engine.connect() as connection:
        count = "SELECT count(*) FROM account WHERE company IS NOT NULL AND voen IS NOT NULL"
        assert (await connection.execute(text(count))).scalar_one() == 6


async def test_sqlite_runs_in_wal_mode(db: Database, backend: str) -> None:
    if backend != "sqlite":
        return
    async with db.engine.connect() as connection:
        mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
    assert mode == "wal"


async def test_numbers_under_concurrency_are_distinct_and_consecutive(db: Database) -> None:
    async def reserve() -> str:
        async with db.transaction() as session:
            number = await applications.reserve_number(session, NOW)
            await asyncio.sleep(0)  # let the others reach the counter while this row is held
            return number

    numbers = await asyncio.gather(*(reserve() for _ in range(20)))
    assert sorted(numbers) == [f"TX-2026-{n:06d}" for n in range(1, 21)]
    async with db.transaction() as session:
        next_year = await applications.reserve_number(session, datetime(2027, 1, 1, tzinfo=UTC))
    assert next_year == "TX-2027-000001"


async def test_a_failed_transaction_does_not_give_back_its_number(db: Database) -> None:
    class Boom(Exception):
        pass

    try:
        async with db.transaction() as session:
            await applications.reserve_number(session, NOW)
            raise Boom
    except Boom:
        pass
    async with db.transaction() as session:
        first = await applications.reserve_number(session, NOW)
    async with db.transaction() as session:
        second = await applications.reserve_number(session, NOW)
    # A rolled-back reservation leaves no trace; committed ones are never handed out again.
    assert (first, second) == ("TX-2026-000001", "TX-2026-000002")


async def test_processed_update_is_recorded_once_under_concurrency(db: Database) -> None:
    async def mark() -> bool:
        async with db.transaction() as session:
            return await conversations.mark_processed(session, "telegram", "42", NOW)

    results = await asyncio.gather(*(mark() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 1


async def test_register_is_idempotent_under_concurrency(sample_db: Database) -> None:
    async with sample_db.transaction() as session:
        [account] = await registry.accounts_by_phone(session, PLAIN)
    assert account.id is not None
    new = ApplicationDraft(
        number="TX-2026-000777",
        subscriber=Subscriber("test", "u1"),
        applicant_phone=PLAIN,
        lang="az",
        account_id=account.id,
        metering_point_id=None,
        reason="no_power",
        description="Səhərdən işıq yoxdur.",
        photo_ref=None,
        latitude=None,
        longitude=None,
        mobile=PLAIN,
        extra_phones=(),
        email=None,
    )

    async def register() -> bool:
        async with sample_db.transaction() as session:
            _, created = await applications.register(session, new, NOW)
            return created

    results = await asyncio.gather(*(register() for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    async with sample_db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Application)) == 1


async def test_two_processes_on_one_conversation_lose_no_update(sample_db: Database, clock) -> None:
    """Two service instances with their own connection pools stand for two bot processes."""
    first = Conversations(sample_db, SmsRecorder(), clock=clock)
    other_db = Database(sample_db.url)
    second = Conversations(other_db, SmsRecorder(), clock=clock)
    try:
        chat = Chat(first, user="shared")
        await fill_residential(chat)
        await chat.press("edit:description")  # each description replaces the one before
        assert (await chat.step()) == Step.DESCRIPTION
        before = (await chat.state()).rev
        services = [first, second] * 10
        results = await asyncio.gather(
            *(
                svc.handle(
                    chat.subscriber, Text(f"Dirəkdəki kabel qopub, yerdə qalıb: {i}."), update_id=f"p{i}"
                )
                for i, svc in enumerate(services)
            )
        )
        assert all(r is not None and r.outcome.changed for r in results)
        after = await chat.state()
        assert after.rev == before + 20  # every update saw the state the previous one wrote
        assert after.data["draft"]["description"].startswith("Dirəkdəki kabel qopub")
    finally:
        await other_db.dispose()


async def test_state_is_written_at_every_transition(chat: Chat) -> None:
    await identify(chat, LANDLORD)  # several accounts: the account question is asked
    seen = [await chat.stored_raw()]
    await chat.press(chat.choice_ids[0])
    seen.append(await chat.stored_raw())
    await chat.press("reason:other")
    seen.append(await chat.stored_raw())
    assert len(set(seen)) == 3
    assert [State.from_json(raw).step for raw in seen] == [Step.ACCOUNT, Step.REASON, Step.DESCRIPTION]


def test_unreadable_stored_state_becomes_a_fresh_menu() -> None:
    for raw in ("", "not json", '{"step": "no_such_step"}', "[]", '{"step": "review", "data": 5}'):
        state = State.from_json(raw, lang="ru")
        assert state.step in Step
        assert State.from_json(state.to_json()) == state


async def test_the_number_year_is_the_year_in_baku(db: Database) -> None:
    async with db.transaction() as session:
        number = await applications.reserve_number(session, datetime(2026, 12, 31, 21, 30, tzinfo=UTC))
    assert number == "TX-2027-000001"  # 01:30 on 1 January in Baku


async def test_a_transaction_inside_another_is_refused(db: Database) -> None:
    import pytest

    async with db.transaction():
        with pytest.raises(RuntimeError, match="inside another"):
            async with db.transaction():
                pass
    async with db.transaction() as session:  # and the guard is released afterwards
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_database_errors_never_carry_the_bound_values(sample_db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    try:
        async with sample_db.transaction() as session:
            await session.execute(
                text("INSERT INTO person (fin, full_name, phone) VALUES (:fin, :name, :phone)"),
                {"fin": "M9CGRC9", "name": "Təkrar", "phone": "+994996510079"},
            )
    except IntegrityError as exc:
        message = str(exc)
    assert "person" in message
    assert "+994996510079" not in message and "M9CGRC9" not in message


def test_which_database_errors_are_worth_a_retry() -> None:
    from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

    from storage.db import is_transient

    class Orig(Exception):
        def __init__(self, sqlstate: str) -> None:
            self.sqlstate = sqlstate

    def error(cls: type[DBAPIError], sqlstate: str) -> DBAPIError:
        return cls("SELECT 1", {}, Orig(sqlstate))

    assert is_transient(error(OperationalError, ""))
    assert is_transient(error(DBAPIError, "40P01"))  # deadlock
    assert is_transient(error(DBAPIError, "40001"))  # serialization failure
    assert is_transient(error(DBAPIError, "55P03"))  # lock not available
    assert is_transient(error(DBAPIError, "57014"))  # statement timeout
    assert not is_transient(error(IntegrityError, "23505"))  # a duplicate will stay one
    assert not is_transient(error(DBAPIError, "22021"))  # bad encoding will stay bad
