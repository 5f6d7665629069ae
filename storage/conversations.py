"""Conversations and processed updates: the state written at every transition, each update once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.db import as_utc, dialect_insert
from storage.models import Conversation, Notification, ProcessedUpdate

_MARK: dict[str, Any] = {}  # the statement, built once per kind of database


async def mark_processed(session: AsyncSession, channel: str, update_id: str, now: datetime) -> bool:
    """Record an update id; False when it was recorded before (a re-delivery to ignore).

    One statement: on PostgreSQL a concurrent insert of the same id waits for the first transaction,
    then inserts nothing.
    """
    dialect = session.get_bind().dialect.name
    statement = _MARK.get(dialect)
    if statement is None:
        table = ProcessedUpdate.__table__  # type: ignore[attr-defined]
        statement = _MARK[dialect] = (
            dialect_insert(session, table)
            .values(
                channel=bindparam("channel"), update_id=bindparam("update_id"), created_at=bindparam("now")
            )
            .on_conflict_do_nothing()
            .returning(table.c.update_id)
        )
    params = {"channel": channel, "update_id": update_id[:128], "now": now}
    return (await _core(session, statement, params)).first() is not None


async def _core(session: AsyncSession, statement: Any, params: dict[str, Any]) -> Any:
    """A Core statement on the session's connection: the ORM's per-statement work (an INSERT …
    RETURNING of an entity is compiled again each time) is not needed for a table's rows."""
    connection = await session.connection()
    return await connection.execute(statement, params)


async def mark_reshown(session: AsyncSession, channel: str, update_id: str, now: datetime) -> bool:
    """Record that a re-delivered update was answered again; False when that happened before."""
    statement = (
        update(ProcessedUpdate)
        .where(
            col(ProcessedUpdate.channel) == channel,
            col(ProcessedUpdate.update_id) == update_id[:128],
            col(ProcessedUpdate.reshown_at).is_(None),
        )
        .values(reshown_at=now)
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Locked:
    """A conversation row held for the current transaction."""

    id: int
    state: str
    lang: str


# Built once: these run for every update, and building a statement costs more than running it.
_TABLE = Conversation.__table__  # type: ignore[attr-defined]
_LOCK = (
    select(_TABLE.c.id, _TABLE.c.state, _TABLE.c.lang)
    .where(_TABLE.c.channel == bindparam("channel"), _TABLE.c.user_key == bindparam("user_key"))
    .with_for_update()
)
_SAVE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"))
    .values(
        state=bindparam("state"),
        step=bindparam("step"),
        lang=bindparam("lang"),
        updated_at=bindparam("now"),
        # A person who writes to us can be written to again.
        unreachable_at=None,
        unreachable_reason=None,
    )
)


async def lock(session: AsyncSession, channel: str, user_key: str, lang: str, now: datetime) -> Locked:
    """The conversation row, created when new, locked for this transaction (a row lock on PostgreSQL)."""
    key = {"channel": channel, "user_key": user_key}
    row = (await _core(session, _LOCK, key)).first()
    if row is None:
        create = (
            dialect_insert(session, Conversation)
            .values(channel=channel, user_key=user_key, lang=lang, step="menu", state="", updated_at=now)
            .on_conflict_do_nothing()
        )
        await session.execute(create)  # a concurrent first contact may have created it: then take that one
        row = (await _core(session, _LOCK, key)).one()
    return Locked(id=row.id, state=row.state, lang=row.lang)


async def save(
    session: AsyncSession, row_id: int, state_json: str, step: str, lang: str, now: datetime
) -> None:
    params = {"row_id": row_id, "state": state_json, "step": step, "lang": lang, "now": now}
    await _core(session, _SAVE, params)


async def mark_unreachable(
    session: AsyncSession, channel: str, user_key: str, reason: str, now: datetime
) -> None:
    """The platform refused to deliver: later news for this person must take another way (SMS)."""
    await session.execute(
        update(_TABLE)
        .where(_TABLE.c.channel == channel, _TABLE.c.user_key == user_key)
        .values(unreachable_at=now, unreachable_reason=reason[:32])
    )


async def get(session: AsyncSession, channel: str, user_key: str) -> Conversation | None:
    query = select(Conversation).where(Conversation.channel == channel, Conversation.user_key == user_key)
    return (await session.scalars(query)).first()


async def pending_notifications(session: AsyncSession, channel: str, user_key: str) -> Sequence[Notification]:
    query = (
        select(Notification)
        .where(
            Notification.channel == channel, Notification.user_key == user_key, Notification.state == "queued"
        )
        .order_by(col(Notification.id))
    )
    return (await session.scalars(query)).all()


async def mark_sent(session: AsyncSession, notification_ids: Sequence[int], now: datetime) -> None:
    if notification_ids:
        await session.execute(
            update(Notification)
            .where(col(Notification.id).in_(notification_ids))
            .values(state="sent", sent_at=now, attempts=Notification.attempts + 1)
        )


async def touch_inbound(session: AsyncSession, conversation_id: int, now: datetime) -> None:
    """The person wrote now: the start of WhatsApp's 24-hour window for free-form messages."""
    await session.execute(
        update(Conversation).where(col(Conversation.id) == conversation_id).values(last_inbound_at=now)
    )


async def last_inbound(session: AsyncSession, channel: str, user_key: str) -> datetime | None:
    row = await get(session, channel, user_key)
    return as_utc(row.last_inbound_at) if row is not None and row.last_inbound_at is not None else None
