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

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from isiqbot.storage.db import as_utc
from isiqbot.storage.models import Application, Notification

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
STAFF = "staff"  # the channel of messages to a staff chat; `user_key` is the chat id
SMS = "sms"  # `user_key` is the phone in E.164
EMAIL = "email"  # `user_key` is the address
CHATS = ("telegram", "whatsapp")  # a permanent failure there falls back to an SMS with the link
SCAN_LIMIT = 500  # unsent rows looked at per claim: the oldest, so no recipient starves


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
    """Take the next message of each recipient that is due, marking it `sending` until `now + lease`.

    A row left `sending` by a worker that died is taken again once its lease is over: a crash repeats
    at most that one send. On PostgreSQL, rows another worker is claiming are skipped, not waited for.
    """
    if not channels:
        return []
    query = (
        select(Notification)
        .where(col(Notification.state).in_((QUEUED, SENDING)), col(Notification.channel).in_(channels))
        .order_by(col(Notification.id))
        .limit(SCAN_LIMIT)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = (await session.scalars(query)).all()
    seen: set[tuple[str, str]] = set()
    claimed: list[Notification] = []
    for row in rows:
        recipient = (row.channel, row.user_key)
        if recipient in seen:
            continue
        seen.add(recipient)
        if row.state == SENDING and row.claimed_at is not None and as_utc(row.claimed_at) > now - lease:
            continue  # another worker is sending it now
        if row.next_attempt_at is not None and as_utc(row.next_attempt_at) > now:
            continue  # waiting for its retry; the later messages of this recipient wait behind it
        row.state = SENDING
        row.claimed_at = now
        row.attempts += 1
        claimed.append(row)
        if len(claimed) >= limit:
            break
    await session.flush()
    return claimed


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


async def by_provider_id(session: AsyncSession, channel: str, provider_id: str) -> Notification | None:
    query = select(Notification).where(
        Notification.channel == channel, Notification.provider_id == provider_id
    )
    return (await session.scalars(query.with_for_update())).first()


def mark_delivered(row: Notification, now: datetime) -> None:
    if row.state in (SENT, SENDING, QUEUED):
        row.state, row.claimed_at = DELIVERED, None


async def fallback_to_sms(session: AsyncSession, notification_id: int, now: datetime) -> Notification | None:
    """A chat message that can never arrive (blocked, chat gone) goes as an SMS with the link instead.

    Not for a result: that has its own SMS already, as on the portal.
    """
    row = await session.get(Notification, notification_id)
    if row is None or row.channel not in CHATS or row.application_id is None:
        return None
    if row.kind not in ("status", "staff_message") or row.payload.get("key") == "notify.status_result":
        return None
    application = await session.get(Application, row.application_id)
    if application is None:
        return None
    return enqueue(
        session,
        channel=SMS,
        user_key=application.mobile,
        lang=application.lang,
        kind="sms_fallback",
        payload={"key": "sms.news", "params": {"number": application.number}},
        now=now,
        application_id=application.id,
    )
