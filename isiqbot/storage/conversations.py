"""Conversations and processed updates: the state written at every transition, each update once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from isiqbot.storage.models import Conversation, Notification, ProcessedUpdate


async def mark_processed(session: AsyncSession, channel: str, update_id: str, now: datetime) -> bool:
    """Record an update id; False when it was recorded before (a re-delivery to ignore).

    On PostgreSQL a concurrent insert of the same id waits for the first transaction, then fails here.
    """
    try:
        async with session.begin_nested():
            session.add(ProcessedUpdate(channel=channel, update_id=update_id[:128], created_at=now))
    except IntegrityError:
        return False
    return True


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
    try:
        async with session.begin_nested():
            session.add(Conversation(channel=channel, user_key=user_key, lang=lang, updated_at=now))
    except IntegrityError:  # created concurrently; take the lock on that one
        pass
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
