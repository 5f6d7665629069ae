"""The outbox: messages owed to subscribers and staff chats, written with the events that cause them.

A row is `queued` until a worker claims it (`sending`, with a lease), then `sent`, or back to
`queued` with a later `next_attempt_at` after a temporary failure, or `failed` for good. The messages
of one recipient leave in the order they were written: a worker takes only the oldest unsent message
of each recipient, and none while an older one is still being sent or waits for its retry.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    String,
    Subquery,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.dml import ReturningUpdate
from sqlmodel import col, select

from dialogs import notices
from storage.models import Application, Notification

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
STATES = (QUEUED, SENDING, SENT, DELIVERED, FAILED)
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
    session.info[QUEUED] = True  # the transaction has news for a worker (see `queued`)
    return notification


def queued(session: AsyncSession) -> bool:
    """Whether this transaction queued a message: only then is a worker woken for it."""
    return bool(session.info.get(QUEUED))


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
    the sends that were on the wire. Expired leases and rows never scheduled go first, then the due
    rows of all the channels, longest due first.

    It reads the rows it may take, not the queue: each channel's due rows in due order from a partial
    index, each checked by one probe of a lane index for an older unsent row, until `limit` heads are
    found; one UPDATE … RETURNING takes them. Workers claim at once: on PostgreSQL a row is locked as
    it is read (`FOR UPDATE SKIP LOCKED`), and one that another claim holds is passed over.

    Why two workers never take two rows of one lane (PostgreSQL, READ COMMITTED: a statement sees the
    rows as committed when it began). A has locked the head H of a lane and set it `sending`, not yet
    committed. B passes H over (locked), and for the lane's second row R its probe finds H unsent (as
    committed, `queued`): R is no head. Once A commits, H is `sending`, still unsent, and holds R back
    until H is sent or failed. If A committed before B reached H, B locks H and re-reads it as it is
    now (PostgreSQL re-checks a row that changed before locking it): `sending` with a fresh lease, not
    due, passed over. So R is taken only once H's sending is over. (As before, of two rows written to
    one recipient at the same moment by two transactions, the later id may commit, and go, first: ids
    are handed out before commit.) SQLite has one writer at a time: the same statement, nothing to skip.
    """
    if not channels:
        return []
    statement = _claim_statement(tuple(sorted(set(channels))), limit)
    claimed = await session.scalars(statement, {"now": now, "expired": now - lease})
    return sorted(claimed.all(), key=lambda row: row.id or 0)


@functools.lru_cache(maxsize=32)
def _claim_statement(channels: tuple[str, ...], limit: int) -> ReturningUpdate[Notification]:
    """The claim's statement, built once per set of channels and batch size (it is long to build).

    The limit is written in, not bound, so that PostgreSQL's estimate of a prepared statement's generic
    plan is that of the rows it reads, not of a tenth of the queue (which would also JIT-compile it).
    """
    n = Notification
    now = bindparam("now", type_=DateTime(timezone=True))
    expired = bindparam("expired", type_=DateTime(timezone=True))
    lease_over = col(n.claimed_at).is_(None) | (col(n.claimed_at) <= expired)
    # Where due rows come from, each read in the order of an index, so that it stops after `limit` heads:
    # the leases that ran out, among the rows being sent (a few: ix_notification_state_id), then each
    # channel's queued rows never scheduled and those due, in due order (ix_notification_due). One source
    # per channel: the index is read from each channel's first due row, whatever other channels hold.
    # Each source locks up to `limit` heads; those not among the first `limit` of all stay locked, not
    # taken, until the claim commits (other claims pass them over meanwhile, and take them later).
    sources = [_due_heads(0, limit, _is(SENDING), col(n.channel).in_(channels), lease_over)]
    for channel in channels:
        in_channel = col(n.channel) == channel
        sources.append(_due_heads(0, limit, _is(QUEUED), in_channel, col(n.next_attempt_at).is_(None)))
        sources.append(_due_heads(1, limit, _is(QUEUED), in_channel, col(n.next_attempt_at) <= now))
    due = union_all(*(select(source) for source in sources)).subquery("due")
    first = (
        select(due.c.id).order_by(due.c.priority, due.c.next_attempt_at, due.c.id).limit(_number(limit))
    ).subquery("first")
    return (
        update(Notification)
        .where(col(Notification.id) == first.c.id)
        .values(state=SENDING, claimed_at=now, attempts=col(Notification.attempts) + 1)
        .returning(Notification)
        .execution_options(populate_existing=True, synchronize_session=False)
    )


def _number(value: int) -> ColumnElement[int]:
    return literal_column(str(int(value)), Integer)


def _sql(value: str) -> ColumnElement[str]:
    """A constant written into the statement, not bound: so the planners see that a partial index
    (whose condition names these constants) covers the rows asked for, whatever the plan cache does."""
    return literal_column(f"'{value}'", String)


def _is(state: str) -> ColumnElement[bool]:
    return col(Notification.state) == _sql(state)


def _due_heads(priority: int, limit: int, *where: ColumnElement[bool]) -> Subquery:
    """The first `limit` lane heads among some due rows, in due order; on PostgreSQL each row is locked as
    it is read, one locked by another worker's claim skipped (SQLite has no row locks: nothing to skip)."""
    return (
        select(Notification, _number(priority).label("priority"))
        .where(*where, _lane_head())
        .order_by(col(Notification.next_attempt_at), col(Notification.id))
        .limit(_number(limit))
        .with_for_update(skip_locked=True, of=Notification)
        .subquery()
    )


def _lane_head() -> ColumnElement[bool]:
    """Whether the row is the head of its lane: no older unsent row of the lane (one index probe).

    Three shapes of lane, each probing its own partial index: a chat's (channel, user_key); a staff
    chat's application thread (user_key, application_id); a staff message of no application
    (application_id NULL: those of one chat form one lane, as GROUP BY has it). An OR of correlated
    subqueries stays a per-row probe (the planner does not turn it into a join over all unsent rows).
    """
    older = aliased(Notification, name="older")
    unsent_before = col(older.state).in_([_sql(QUEUED), _sql(SENDING)]) & (
        col(older.id) < col(Notification.id)
    )
    staff = _sql(STAFF)
    same_chat = (col(older.channel) == col(Notification.channel)) & (
        col(older.user_key) == col(Notification.user_key)
    )
    chat = (col(Notification.channel) != staff) & ~exists().where(
        col(older.channel) != staff, same_chat, unsent_before
    )
    thread = (
        (col(Notification.channel) == staff)
        & col(Notification.application_id).is_not(None)
        & ~exists().where(
            col(older.channel) == staff,
            col(older.user_key) == col(Notification.user_key),
            col(older.application_id) == col(Notification.application_id),
            unsent_before,
        )
    )
    loose = (
        (col(Notification.channel) == staff)
        & col(Notification.application_id).is_(None)
        & ~exists().where(
            col(older.channel) == staff,
            col(older.user_key) == col(Notification.user_key),
            col(older.application_id).is_(None),
            unsent_before,
        )
    )
    return or_(chat, thread, loose)


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


async def due_by_channel(session: AsyncSession, now: datetime) -> dict[str, tuple[int, datetime]]:
    """Messages due and not sent, by channel: how many, and since when the longest-waiting one is due."""
    query = (
        select(Notification.channel, func.count(), func.min(Notification.next_attempt_at))
        .where(col(Notification.state) == QUEUED, col(Notification.next_attempt_at) <= now)
        .group_by(Notification.channel)
    )
    rows = await session.execute(query)
    return {channel: (count, since) for channel, count, since in rows if since is not None}


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
