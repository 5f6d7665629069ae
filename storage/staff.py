"""The staff side of an application: its department and thread, the messages tied to it, the audit."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dialogs.lifecycle import NEEDS_RESULT, OPEN, Status
from storage import outbox
from storage.db import as_utc
from storage.models import (
    Application,
    LinkedMessage,
    Notification,
    Rating,
    StaffAction,
    StaffThread,
    StatusChange,
)

OPEN_VALUES = tuple(s.value for s in OPEN)
MOVED = "moved"  # to a staff chat: the card of an application that moved to another department is closed
CLOSED_WITH_RESULT = tuple(s.value for s in NEEDS_RESULT)
_SERIAL = re.compile(r"^\d{1,6}$")
_NUMBER = re.compile(r"^TX-\d{4}-\d{6}$")
_DIGITS = re.compile(r"^\+?\d{6,15}$")


def route(
    session: AsyncSession, application: Application, department: str, chat_id: int, now: datetime
) -> None:
    """Give a new application to its department and queue its card for the department's chat."""
    assert application.id is not None
    application.department = department
    session.add(StaffThread(application_id=application.id, chat_id=chat_id, created_at=now))
    _queue_card(session, application, chat_id, now)


def _queue_card(session: AsyncSession, application: Application, chat_id: int, now: datetime) -> None:
    """The card (and the photos, voice note and document) for the department's chat, in order."""
    assert application.id is not None
    # The location is a link on the card. The first photo is the card itself where the chat can show
    # it so (its sender then leaves it out), else it goes after the card with the others.
    attachments: list[tuple[str, dict[str, Any]]] = [("card", {})]
    # Photos are Telegram file ids, or WhatsApp media ids the staff chat fetches: several go as one
    # album (one group message of the 20 a minute), then the voice note and the document (their
    # shape: `dialogs.attachments`). A row from before there were several has only `photo_ref`.
    files = application.attachments or []
    photos = [str(f["ref"]) for f in files if f.get("kind") == "photo"]
    if photos:
        attachments.append(("album", {"photos": photos}))
    elif application.photo_ref:
        attachments.append(("photo", {"photo": application.photo_ref}))
    for kind in ("voice", "document"):
        attachments += [
            (kind, {"ref": f["ref"], "mime": f.get("mime") or "", "name": f.get("name") or ""})
            for f in files
            if f.get("kind") == kind
        ]
    for kind, payload in attachments:  # one recipient's messages leave in order: the card first
        outbox.enqueue(
            session,
            channel=outbox.STAFF,
            user_key=str(chat_id),
            kind=kind,
            payload=payload,
            now=now,
            application_id=application.id,
        )


@dataclass(frozen=True, slots=True)
class Moved:
    """Where an application's thread was before it moved: the old card is closed there."""

    chat_id: int
    topic_id: int | None
    card_message_id: int | None


async def move(
    session: AsyncSession, application: Application, department: str, chat_id: int, now: datetime
) -> Moved | None:
    """Give an open application to another department: its thread starts anew in that department's
    chat (a new card is queued there), nobody is assigned, and its deadlines are flagged afresh.
    Returns where its thread was, or None when it had none."""
    assert application.id is not None
    found = await session.get(StaffThread, application.id, with_for_update=True)
    before = Moved(found.chat_id, found.topic_id, found.card_message_id) if found is not None else None
    if found is None:
        session.add(StaffThread(application_id=application.id, chat_id=chat_id, created_at=now))
    else:
        found.chat_id, found.topic_id, found.card_message_id, found.created_at = chat_id, None, None, now
    application.department = department
    application.assignee_id = application.assignee_name = application.taken_at = None
    application.take_flagged_at = application.done_flagged_at = None
    application.updated_at = now
    _queue_card(session, application, chat_id, now)
    return before


async def thread(session: AsyncSession, application_id: int) -> StaffThread | None:
    return await session.get(StaffThread, application_id)


async def thread_by_topic(session: AsyncSession, chat_id: int, topic_id: int) -> StaffThread | None:
    query = select(StaffThread).where(StaffThread.chat_id == chat_id, StaffThread.topic_id == topic_id)
    return (await session.scalars(query)).first()


async def to_thread(
    session: AsyncSession, application_id: int, kind: str, payload: dict[str, Any], now: datetime
) -> bool:
    """Queue a message into the application's staff thread; False when it has none (no department).

    A card refresh is queued once: one still waiting shows the state as it is when it goes, as does
    a card not posted yet, so edits coalesce instead of spending the group's 20 a minute.
    """
    found = await thread(session, application_id)
    if found is None:
        return False
    if kind == "card_refresh" and await _card_will_show(session, application_id):
        return True
    outbox.enqueue(
        session,
        channel=outbox.STAFF,
        user_key=str(found.chat_id),
        kind=kind,
        payload=payload,
        now=now,
        application_id=application_id,
    )
    return True


async def _card_will_show(session: AsyncSession, application_id: int) -> bool:
    waiting = select(Notification.id).where(
        Notification.application_id == application_id,
        Notification.channel == outbox.STAFF,
        col(Notification.kind).in_(("card", "card_refresh")),
        Notification.state == outbox.QUEUED,
    )
    return (await session.scalars(waiting.limit(1))).first() is not None


async def link(
    session: AsyncSession,
    channel: str,
    chat_id: int | str,
    message_id: int | str,
    application_id: int,
    kind: str,
    now: datetime,
    action: str | None = None,
    user_id: int | None = None,
) -> None:
    """Remember that a message belongs to an application, so a reply to it finds the application."""
    key = (channel, str(chat_id), str(message_id))
    existing = await session.get(LinkedMessage, key)
    if existing is not None:
        existing.application_id, existing.kind, existing.action, existing.user_id = (
            application_id,
            kind,
            action,
            user_id,
        )
        return
    session.add(
        LinkedMessage(
            channel=channel,
            chat_id=key[1],
            message_id=key[2],
            application_id=application_id,
            kind=kind,
            action=action,
            user_id=user_id,
            created_at=now,
        )
    )


async def linked(
    session: AsyncSession, channel: str, chat_id: int | str, message_id: int | str
) -> LinkedMessage | None:
    return await session.get(LinkedMessage, (channel, str(chat_id), str(message_id)))


def audit(
    session: AsyncSession,
    *,
    chat_id: int,
    user_id: int,
    user_name: str,
    action: str,
    allowed: bool,
    now: datetime,
    application_id: int | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        StaffAction(
            application_id=application_id,
            chat_id=chat_id,
            user_id=user_id,
            user_name=user_name[:128],
            action=action[:32],
            allowed=allowed,
            detail=detail[:500] if detail else None,
            created_at=now,
        )
    )


async def actions(session: AsyncSession, application_id: int | None = None) -> Sequence[StaffAction]:
    query = select(StaffAction).order_by(col(StaffAction.id))
    if application_id is not None:
        query = query.where(StaffAction.application_id == application_id)
    return (await session.scalars(query)).all()


async def get_for_update(session: AsyncSession, application_id: int) -> Application | None:
    query = select(Application).where(Application.id == application_id).with_for_update()
    return (await session.scalars(query)).first()


def assign(application: Application, user_id: int, name: str, now: datetime) -> None:
    application.assignee_id = user_id
    application.assignee_name = name[:128]
    application.taken_at = now
    application.updated_at = now


async def open_applications(
    session: AsyncSession, department: str | None, limit: int = 200
) -> Sequence[Application]:
    """Open applications, oldest first; of one department, or of all when `department` is None."""
    query = select(Application).where(col(Application.status).in_(OPEN_VALUES))
    if department is not None:
        query = query.where(Application.department == department)
    query = query.order_by(col(Application.created_at), col(Application.id)).limit(limit)
    return (await session.scalars(query)).all()


async def find(
    session: AsyncSession, text: str, department: str | None, limit: int = 20
) -> Sequence[Application]:
    """By number (TX-2026-000001 or its serial), subscriber or main code, or phone; newest first."""
    text = text.strip()
    upper = text.upper()
    conditions = []
    if _NUMBER.fullmatch(upper):
        conditions.append(col(Application.number) == upper)
    if _SERIAL.fullmatch(text):
        conditions.append(col(Application.number).endswith(f"-{int(text):06d}"))
    compact = re.sub(r"[\s()-]", "", text)
    if _DIGITS.fullmatch(compact):
        conditions.append(col(Application.account_code) == compact.lstrip("+"))
        conditions.append(col(Application.metering_point_code) == compact.lstrip("+"))
        phone = _e164(compact)
        if phone:
            conditions += [col(Application.applicant_phone) == phone, col(Application.mobile) == phone]
    if not conditions:
        return []
    query = select(Application).where(or_(*conditions))
    if department is not None:
        query = query.where(Application.department == department)
    query = query.order_by(col(Application.created_at).desc(), col(Application.id).desc()).limit(limit)
    return (await session.scalars(query)).all()


def _e164(digits: str) -> str | None:
    """+994 50 123 45 67, 994501234567, 0501234567 or 501234567 as +994501234567."""
    bare = digits.lstrip("+")
    if bare.startswith("994") and len(bare) == 12:
        return "+" + bare
    if bare.startswith("0") and len(bare) == 10:
        return "+994" + bare[1:]
    if len(bare) == 9:
        return "+994" + bare
    return None


LOW_STARS = 2  # a rating of 1 or 2 stars counts as low


@dataclass(frozen=True, slots=True)
class Ratings:
    """The subscribers' ratings over a period: how many, their average, how many were low."""

    count: int
    average: float | None
    low: int

    @property
    def low_share(self) -> float:
        return self.low / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class Stats:
    by_status: dict[str, int]
    median_7: timedelta | None  # from registration to a result, over results of the last 7 days
    median_30: timedelta | None
    results_7: int
    results_30: int
    ratings_30: Ratings = Ratings(0, None, 0)  # given in the last 30 days
    ratings_all: Ratings = Ratings(0, None, 0)  # ever


async def stats(session: AsyncSession, department: str | None, now: datetime) -> Stats:
    counts = select(Application.status, func.count()).group_by(Application.status)
    since = now - timedelta(days=30)
    closed = (
        select(Application.created_at, StatusChange.created_at)
        .join(StatusChange, col(StatusChange.application_id) == col(Application.id))
        .where(col(StatusChange.new_status).in_(CLOSED_WITH_RESULT), col(StatusChange.created_at) >= since)
    )
    if department is not None:
        counts = counts.where(Application.department == department)
        closed = closed.where(Application.department == department)
    by_status = {status: int(n) for status, n in await session.execute(counts)}
    durations: list[tuple[datetime, timedelta]] = [
        (as_utc(done), as_utc(done) - as_utc(created)) for created, done in await session.execute(closed)
    ]
    week = [d for at, d in durations if at >= now - timedelta(days=7)]
    month = [d for _, d in durations]
    recent, ever = await ratings(session, department, since), await ratings(session, department, None)
    return Stats(by_status, _median(week), _median(month), len(week), len(month), recent, ever)


async def ratings(session: AsyncSession, department: str | None, since: datetime | None) -> Ratings:
    """The ratings of a department's applications (of all, when None), given since `since` (ever)."""
    low = func.sum(case((col(Rating.stars) <= LOW_STARS, 1), else_=0))
    query = select(func.count(), func.avg(Rating.stars), low).join(
        Application, col(Application.id) == col(Rating.application_id)
    )
    if department is not None:
        query = query.where(Application.department == department)
    if since is not None:
        query = query.where(col(Rating.created_at) >= since)
    count, average, low_count = (await session.execute(query)).one()
    return Ratings(int(count or 0), float(average) if average is not None else None, int(low_count or 0))


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    return timedelta(seconds=statistics.median(v.total_seconds() for v in values))


async def flag_overdue(
    session: AsyncSession, now: datetime, take_within: timedelta, done_within: timedelta, limit: int = 100
) -> list[tuple[Application, str]]:
    """Open applications past a deadline not flagged before, flagged now: each deadline once.

    "take": registered and nobody took it within `take_within`; "done": no result within `done_within`.
    """
    flagged: list[tuple[Application, str]] = []
    late_take = (
        select(Application)
        .where(
            Application.status == Status.REGISTERED.value,
            col(Application.assignee_id).is_(None),
            col(Application.take_flagged_at).is_(None),
            col(Application.created_at) <= now - take_within,
        )
        .order_by(col(Application.id))
        .limit(limit)
    )
    late_done = (
        select(Application)
        .where(
            col(Application.status).in_(OPEN_VALUES),
            col(Application.done_flagged_at).is_(None),
            func.coalesce(col(Application.deadlines_from), col(Application.created_at)) <= now - done_within,
        )
        .order_by(col(Application.id))
        .limit(limit)
    )
    skip_locked = session.get_bind().dialect.name == "postgresql"
    for query, which in ((late_take, "take"), (late_done, "done")):
        if skip_locked:
            query = query.with_for_update(skip_locked=True)
        for application in (await session.scalars(query)).all():
            if which == "take":
                application.take_flagged_at = now
            else:
                application.done_flagged_at = now
            flagged.append((application, which))
    await session.flush()
    return flagged


def deadlines_start(application: Application) -> datetime:
    """Where its deadlines count from: its registration, or its reopening since."""
    return as_utc(application.deadlines_from or application.created_at)


def due_at(application: Application, done_within: timedelta) -> datetime:
    return deadlines_start(application) + done_within


def overdue(application: Application, now: datetime, take_within: timedelta, done_within: timedelta) -> bool:
    if application.status not in OPEN_VALUES:
        return False
    started = deadlines_start(application)
    if now - started > done_within:
        return True
    return (
        application.status == Status.REGISTERED.value
        and application.assignee_id is None
        and (now - started > take_within)
    )


async def relays_since(session: AsyncSession, application_id: int, since: datetime) -> int:
    """Messages a subscriber sent to the application's thread since `since`."""
    query = (
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.application_id == application_id,
            Notification.channel == outbox.STAFF,
            Notification.kind == "relay",
            col(Notification.created_at) >= since,
        )
    )
    return int(await session.scalar(query) or 0)
