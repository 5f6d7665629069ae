"""The async engine: SQLite in WAL mode for one machine, PostgreSQL for scale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    """An engine for `url`; for SQLite the folder is created and WAL, foreign keys and locking set."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No ping on checkout (a round trip per update): a dead connection fails the update with a
        # database error, the platform re-delivers it, and the pool replaces the connection.
        return create_async_engine(
            url, pool_size=10, max_overflow=10, pool_recycle=1800, hide_parameters=True
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error message quotes the statement, never the phones and texts bound to it.
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so that BEGIN IMMEDIATE below holds.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock at the start: two processes then serialise instead of failing mid-way.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_inside: ContextVar[bool] = ContextVar("isiqbot_inside_transaction", default=False)


class Database:
    """The engine and its session factory; `transaction()` is the one unit of work per update."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing our own transactions here is far cheaper than
        # letting connections collide on the file lock, where SQLite's busy handler sleeps and retries.
        self._sqlite_turn = asyncio.Lock() if is_sqlite(url) else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back when it raises.

        Not re-entrant: a transaction opened inside another would escape its atomicity (and on SQLite
        wait for itself), so that is refused at once.
        """
        if _inside.get():
            raise RuntimeError("a transaction was opened inside another one; pass the session instead")
        token = _inside.set(True)
        try:
            if self._sqlite_turn is None:
                async with self.sessions() as session, session.begin():
                    yield session
            else:
                async with self._sqlite_turn, self.sessions() as session, session.begin():
                    yield session
        finally:
            _inside.reset(token)

    async def dispose(self) -> None:
        await self.engine.dispose()


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLSTATE classes a retry can cure: connection (08), transaction rollback such as a deadlock or a
# serialization failure (40), insufficient resources (53), operator intervention and timeouts (57),
# and "lock not available" (55P03).
RETRYABLE_SQLSTATE = ("08", "40", "53", "57", "55P03")


def is_transient(exc: DBAPIError) -> bool:
    """Whether the database may well accept the same update a moment later."""
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    return state.startswith(RETRYABLE_SQLSTATE)


def storage_unavailable(exc: BaseException) -> bool:
    """Whether a failure means "the database is away for now": the update must come again later."""
    if isinstance(exc, DBAPIError):
        return is_transient(exc)
    return isinstance(exc, OSError | TimeoutError)


def dialect_insert(session: AsyncSession, target: Any) -> Any:
    """INSERT for this database, with ON CONFLICT support (both SQLite and PostgreSQL have it): of an
    entity, or of a `Table`'s rows (Core, no ORM work per statement)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(target)
