"""Fixtures: the real databases (SQLite file, PostgreSQL), a clock the tests move, the fake channel."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.core.service import Conversations
from bot.core.settings import Settings
from storage import registry
from storage.db import Database
from storage.migrate import upgrade
from tests.chat import ALL_SETTINGS, Chat, SmsRecorder
from tests.fake_graph import FakeGraph
from tests.fake_telegram import FakeTelegram
from tests.outside import Gateway, Mailbox, sms_gateway, smtp_server
from tests.running import Isiqbot, World

POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("ISIQBOT_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _server_dsn(database: str) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


async def _postgres_database() -> str:
    """A fresh database on the local server; skip (or fail in CI) when there is no server."""
    name = f"isiqbot_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(_server_dsn(make_url(POSTGRES_URL).database or "test"), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {make_url(POSTGRES_URL).host}: {exc}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_postgres_database(name: str) -> None:
    admin = await asyncpg.connect(_server_dsn(make_url(POSTGRES_URL).database or "test"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(autouse=True, scope="session")
def _no_settings_from_the_developer() -> None:
    """A developer's own isiqbot settings (LOG_LEVEL, a token …) never change what a test sees."""
    for name in ALL_SETTINGS:
        os.environ.pop(name, None)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(backend: str, tmp_path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'isiqbot.db'}"
        return
    name = await _postgres_database()
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _drop_postgres_database(name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await upgrade(database.engine)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def sample_db(db: Database) -> Database:
    async with db.transaction() as session:
        await registry.import_csv(session, registry.SAMPLE_CSV.read_bytes())
    return db


@pytest.fixture
def settings(sample_db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a command line run reads, on the sample database; the deadlines at their defaults
    whatever this shell's environment says."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    for name in ("SLA_TAKE_HOURS", "SLA_DONE_DAYS"):
        monkeypatch.delenv(name, raising=False)
    return Settings(env_file=None)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sms() -> SmsRecorder:
    return SmsRecorder()


@pytest.fixture
def service(sample_db: Database, sms: SmsRecorder, clock: Clock) -> Conversations:
    return Conversations(sample_db, sms, clock=clock)


@pytest.fixture
def chat(service: Conversations) -> Chat:
    return Chat(service)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A local Bot API server."""
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A local HTTP SMS gateway."""
    async with sms_gateway() as recorder:
        yield recorder


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1, and its port."""
    with smtp_server() as mailbox:
        yield mailbox, mailbox.port


@pytest.fixture
async def world(fake: FakeTelegram) -> AsyncIterator[World]:
    graph = FakeGraph()
    await graph.start()
    async with sms_gateway() as sms:
        with smtp_server() as mail:
            yield World(fake, graph, sms, mail)
    await graph.stop()


@pytest.fixture
async def running(tmp_path: Path, world: World, db: Database, db_url: str) -> AsyncIterator[Isiqbot]:
    """The service as an operator starts it: registry imported, then `isiqbot run`; SIGTERM at the end."""
    service = Isiqbot(tmp_path, world, db_url)
    await asyncio.to_thread(service.import_registry)
    await service.start()
    try:
        yield service
        assert await service.stop() == 0, service.log
    finally:
        service.kill()
    assert "Traceback" not in service.log, service.log
