"""Alembic, run from code: `isiqbot migrate` and every start bring the schema to the newest revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind `engine`; safe to run at every start and from several processes."""

    def _run(connection: Connection) -> None:
        cfg = config(engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Two processes starting at once must not both create the tables.
            await connection.exec_driver_sql("SELECT pg_advisory_xact_lock(724311)")
        await connection.run_sync(_run)


async def open_database(url: str) -> Database:
    """The database at `url`, migrated to the newest schema."""
    db = Database(url)
    await upgrade(db.engine)
    return db
