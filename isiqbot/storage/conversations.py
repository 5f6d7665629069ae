"""Conversations and processed updates: the state written at every transition, each update once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col, select

from isiqbot.storage.models import Conversation, Notification, ProcessedUpdate


def _insert(session: AsyncSession, model: type[SQLModel]) -> Any:
    """INSERT for this database, with ON CONFLICT support (both SQLite and PostgreSQL have it)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


async def mark_processed(session: AsyncSession, channel: str, update_id: str, now: datetime) -> bool:
    """Record an update id; False when it was recorded before (a re-delivery to ignore).

    One statement: on PostgreSQL a concurrent insert of the same id waits for the first transaction,
    then inserts nothing.
    """
    statement = (
        _insert(session, ProcessedUpdate)
        .values(channel=channel, update_id=update_id[:128], created_at=now)
        .on_conflict_do_nothing()
        .returning(col(ProcessedUpdate.update_id))
    )
    return (await session.execute(statement)).first() is not None


async def lock(session: AsyncSession, channel: str, user_key: str, lang: str, now: datetime) -> Conversation:
    """The conversation row, created when new, locked for this transaction (a row lock on PostgreSQL)."""
    query = (
        select(Conversation)
        .where(Conversation.channel == channel, Conversation.user_key == user_key)
        .with_for_update()
    )
    conversation = (await session.scalars(query)).first()
    if conversation is not None:
        return conversation
    create = (
        _insert(session, Conversation)
        .values(channel=channel, user_key=user_key, lang=lang, step="menu", state="", updated_at=now)
        .on_conflict_do_nothing()
    )
    await session.execute(create)  # a concurrent first contact may have created it: then take that one
    return (await session.scalars(query.execution_options(populate_existing=True))).one()


def save(conversation: Conversation, state_json: str, step: str, lang: str, now: datetime) -> None:
    conversation.state = state_json
    conversation.step = step
    conversation.lang = lang
    conversation.updated_at = now


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
