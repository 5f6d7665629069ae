"""The outbox: messages owed to subscribers and staff chats, written with the events that cause them.

A row is `queued` until a worker claims it (`sending`, with a lease), then `sent`, or back to
`queued` with a later `next_attempt_at` after a temporary failure, or `failed` for good. The messages
of one recipient leave in the order they were written: a worker takes only the oldest unsent message
of each recipient, and none while an older one is still being sent or waits for its retry.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dialogs import notices
from storage.models import Application, Notification

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
STAFF = "staff"  # the channel of messages to a staff chat; `user_key` is the chat id
SMS = "sms"  # `user_key` is the phone in E.164
EMAIL = "email"  # `user_key` is the address
REPLY = "reply"  # an answer to what the person just did, that could not leave at once
NOT_CHATS = (STAFF, SMS, EMAIL)  # every other channel is a subscriber's chat


def enqueue(
    session: AsyncSession,
    *,
    channel: str,
    user_key: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    lang: str = "az",
    application_id: int | None = None,
) -> Notification:
    notification = Notification(
        application_id=application_id,
        channel=channel,
        user_key=user_key,
        lang=lang,
        kind=kind,
        payload=payload,
        state=QUEUED,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(notification)
    return notification


async def claim(
    session: AsyncSession,
    channels: Collection[str],
    now: datetime,
    lease: timedelta,
    limit: int = 50,
) -> list[Notification]:
    """Take the next message of each lane that is due, marking it `sending` until `now + lease`.

    A lane is one recipient; in a staff chat, one application's thread, so that a card waiting for
    its retry holds back only its own application. Only the head of a lane (its oldest unsent row) may
    go, so a lane's messages leave in order. A row left `sending` by a worker that died is taken again
    once its lease is over (a live worker renews the leases of its sends): a crash repeats at most
    the sends that were on the wire. On PostgreSQL the claims of several
    workers take turns (a transaction-scoped advisory lock), so no two see the same heads.
    """
    if not channels:
        return []
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(724312)"))
    unsent = col(Notification.state).in_((QUEUED, SENDING)) & col(Notification.channel).in_(channels)
    lane = case((col(Notification.channel) == STAFF, col(Notification.application_id)), else_=None)
    heads = (
        select(func.min(Notification.id))
        .where(unsent)
        .group_by(col(Notification.channel), col(Notification.user_key), lane)
    )
    due = or_(
        (col(Notification.state) == QUEUED)
        & or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
        (col(Notification.state) == SENDING)
        & or_(col(Notification.claimed_at).is_(None), col(Notification.claimed_at) <= now - lease),
    )
    query = (
        select(Notification)
        .where(col(Notification.id).in_(heads), due)
        .order_by(col(Notification.id))
        .limit(limit)
        .with_for_update()
    )
    claimed = list((await session.scalars(query)).all())
    for row in claimed:
        row.state = SENDING
        row.claimed_at = now
        row.attempts += 1
    await session.flush()
    return claimed


async def renew(session: AsyncSession, notification_ids: Collection[int], now: datetime) -> None:
    """Keep the lease of sends still in progress: a live worker's claims are not taken from it."""
    if notification_ids:
        await session.execute(
            update(Notification)
            .where(col(Notification.id).in_(notification_ids), col(Notification.state) == SENDING)
            .values(claimed_at=now)
        )


async def _get(session: AsyncSession, notification_id: int) -> Notification | None:
    return await session.get(Notification, notification_id, with_for_update=True)


async def mark_sent(
    session: AsyncSession, notification_id: int, provider_id: str | None, now: datetime
) -> None:
    row = await _get(session, notification_id)
    if row is None:
        return
    row.state, row.sent_at, row.claimed_at = SENT, now, None
    row.provider_id = provider_id[:128] if provider_id else None
    row.last_error = None


async def retry_later(session: AsyncSession, notification_id: int, error: str, at: datetime) -> None:
    row = await _get(session, notification_id)
    if row is None:
        return
    row.state, row.next_attempt_at, row.claimed_at = QUEUED, at, None
    row.last_error = error[:500]


async def mark_failed(session: AsyncSession, notification_id: int, error: str, now: datetime) -> None:
    row = await _get(session, notification_id)
    if row is None:
        return
    row.state, row.claimed_at = FAILED, None
    row.last_error = error[:500]
    row.sent_at = None
    row.next_attempt_at = now


async def for_application(session: AsyncSession, application_id: int) -> Sequence[Notification]:
    query = (
        select(Notification)
        .where(Notification.application_id == application_id)
        .order_by(col(Notification.id))
    )
    return (await session.scalars(query)).all()


async def counts_by_state(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Notification.state, func.count()).group_by(Notification.state))
    return {state: count for state, count in rows}


async def unsent(session: AsyncSession, channel: str, user_key: str, kind: str) -> int:
    """How many messages of this kind to this recipient are not sent yet."""
    query = select(func.count()).where(
        col(Notification.channel) == channel,
        col(Notification.user_key) == user_key,
        col(Notification.kind) == kind,
        col(Notification.state).in_((QUEUED, SENDING)),
    )
    return int(await session.scalar(query) or 0)


async def oldest_due(session: AsyncSession, now: datetime) -> datetime | None:
    """When the longest-waiting message that is due was due (None: nothing is), for readiness."""
    query = select(func.min(Notification.next_attempt_at)).where(
        col(Notification.state) == QUEUED, col(Notification.next_attempt_at) <= now
    )
    return await session.scalar(query)


async def waiting_channels(session: AsyncSession) -> dict[str, int]:
    """Unsent messages by channel: at start, those of a channel nobody sends for are worth a warning."""
    query = (
        select(Notification.channel, func.count())
        .where(col(Notification.state).in_((QUEUED, SENDING)))
        .group_by(Notification.channel)
    )
    return {channel: count for channel, count in await session.execute(query)}


async def by_provider_id(session: AsyncSession, channel: str, provider_id: str) -> Notification | None:
    query = select(Notification).where(
        Notification.channel == channel, Notification.provider_id == provider_id
    )
    return (await session.scalars(query.with_for_update())).first()


def mark_delivered(row: Notification, now: datetime) -> None:
    if row.state in (SENT, SENDING, QUEUED):
        row.state, row.claimed_at = DELIVERED, None


async def fallback_to_sms(session: AsyncSession, notification_id: int, now: datetime) -> Notification | None:
    """A chat message that can never arrive (blocked, chat gone): what the policy says instead, if
    anything (`dialogs.notices.chat_lost`: an SMS with the link)."""
    row = await session.get(Notification, notification_id)
    if row is None or row.channel in NOT_CHATS or row.application_id is None:
        return None
    application = await session.get(Application, row.application_id)
    notice = notices.chat_lost(row.kind, row.payload, application.number) if application else None
    if application is None or notice is None:
        return None
    return enqueue(
        session,
        channel=SMS,
        user_key=application.mobile,
        lang=application.lang,
        kind=notice.kind,
        payload=notice.payload,
        now=now,
        application_id=application.id,
    )
