"""Applications: numbers, registration exactly once, listings and status changes with their trail."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dialogs import lifecycle, notices
from dialogs.lifecycle import IllegalTransition, Role, Status
from dialogs.notices import Notice
from dialogs.ports import ApplicationDraft
from storage import outbox, staff
from storage.db import as_utc, dialect_insert
from storage.models import (
    Account,
    Application,
    ApplicationCounter,
    ApplicationFollower,
    MeteringPoint,
    Rating,
    StatusChange,
)
from storage.staff import OPEN_VALUES

NUMBER_PREFIX = "TX"
LOCAL_TZ = ZoneInfo("Asia/Baku")
LIST_LIMIT = 50


def format_number(year: int, serial: int) -> str:
    """TX-2026-000123."""
    return f"{NUMBER_PREFIX}-{year:04d}-{serial:06d}"


async def reserve_number(session: AsyncSession, now: datetime) -> str:
    """The next application number of the year; the counter row is locked until the transaction ends."""
    year = now.astimezone(LOCAL_TZ).year  # the year in Baku, not in UTC, on the night of 31 December
    bump = (
        update(ApplicationCounter)
        .where(col(ApplicationCounter.year) == year)
        .values(last=col(ApplicationCounter.last) + 1)
        .returning(col(ApplicationCounter.last))
    )
    serial = (await session.execute(bump)).scalar_one_or_none()
    if serial is None:
        try:
            async with session.begin_nested():
                session.add(ApplicationCounter(year=year, last=1))
            serial = 1
        except IntegrityError:  # another transaction created the year's row first
            serial = (await session.execute(bump)).scalar_one()
    return format_number(year, serial)


def _row(new: ApplicationDraft, account: Account, point: MeteringPoint | None, now: datetime) -> Application:
    """The application as stored: the draft, with what the registry knows of its account and point."""
    return Application(
        number=new.number,
        channel=new.subscriber.channel,
        user_key=new.subscriber.user_key,
        applicant_phone=new.applicant_phone,
        lang=new.lang,
        person_id=account.person_id,
        account_id=account.id,
        kind=account.kind,
        account_code=account.code,
        metering_point_id=point.id if point else None,
        metering_point_code=point.code if point else None,
        address=point.address if point else account.address,
        region=point.region if point else account.region,
        reason=new.reason,
        description=new.description,
        photo_ref=new.photo_ref,
        attachments=[dict(item) for item in new.attachments],
        latitude=new.latitude,
        longitude=new.longitude,
        mobile=new.mobile,
        extra_phones=list(new.extra_phones),
        email=new.email,
        status=Status.REGISTERED.value,
        created_at=now,
        updated_at=now,
    )


async def register(session: AsyncSession, new: ApplicationDraft, now: datetime) -> tuple[Application, bool]:
    """Register once: a second call with the same number returns the first application and False.

    The draft is the dialog's (`dialogs.ports.ApplicationDraft`, the one declaration of what a
    subscriber files); what the registry knows (the account's kind, code, address) is copied in here.
    """
    existing = await by_number(session, new.number)
    if existing is not None:
        return existing, False
    account = await session.get(Account, new.account_id)
    if account is None:
        raise LookupError(f"account {new.account_id} does not exist")
    point = await session.get(MeteringPoint, new.metering_point_id) if new.metering_point_id else None
    if point is not None and (point.account_id != account.id or not point.active):
        raise LookupError(f"metering point {point.id} is not an active point of account {account.id}")
    application = _row(new, account, point, now)
    try:
        async with session.begin_nested():
            session.add(application)
            await session.flush()
    except IntegrityError:  # the same number registered concurrently: that one stands
        existing = await by_number(session, new.number)
        if existing is None:
            raise
        return existing, False
    assert application.id is not None
    session.add(
        StatusChange(
            application_id=application.id,
            old_status=None,
            new_status=Status.REGISTERED.value,
            actor=f"subscriber:{new.subscriber.channel}",
            created_at=now,
        )
    )
    await tell(session, application, notices.registered(application.number), now)
    return application, True


async def tell(
    session: AsyncSession, application: Application, told: Sequence[Notice], now: datetime
) -> None:
    """Queue what the notification policy says, addressed to this application's chat, mobile, e-mail
    (when it has one) or staff thread."""
    assert application.id is not None
    followers: list[tuple[str, str, str]] | None = None  # read once, when a notice is for the chat
    for notice in told:
        if notice.via == notices.THREAD:
            await staff.to_thread(session, application.id, notice.kind, notice.payload, now)
            continue
        if notice.via == notices.EMAIL and not application.email:
            continue
        channel, user_key = {
            notices.CHAT: (application.channel, application.user_key),
            notices.SMS: (outbox.SMS, application.mobile),
            notices.EMAIL: (outbox.EMAIL, application.email or ""),
        }[notice.via]
        recipients = [(channel, user_key, application.lang)]
        if notice.via == notices.CHAT:  # the chats that follow it hear it too
            if followers is None:
                followers = await _followers(session, application.id)
            recipients += followers
        for channel, user_key, lang in recipients:
            outbox.enqueue(
                session,
                channel=channel,
                user_key=user_key,
                lang=lang,
                kind=notice.kind,
                payload=notice.payload,
                now=now,
                application_id=application.id,
            )


async def _followers(session: AsyncSession, application_id: int) -> list[tuple[str, str, str]]:
    query = select(ApplicationFollower).where(ApplicationFollower.application_id == application_id)
    return [(f.channel, f.user_key, f.lang) for f in await session.scalars(query)]


async def chats_of(session: AsyncSession, application: Application) -> list[tuple[str, str, str]]:
    """The chat that filed the application and the chats that follow it: (channel, user key, language)."""
    assert application.id is not None
    return [
        (application.channel, application.user_key, application.lang),
        *await _followers(session, application.id),
    ]


async def open_on(session: AsyncSession, account_id: int, point_id: int | None) -> Application | None:
    """The newest open application on this account (on this metering point, when one is given)."""
    query = select(Application).where(
        col(Application.account_id) == account_id, col(Application.status).in_(OPEN_VALUES)
    )
    if point_id is not None:
        query = query.where(col(Application.metering_point_id) == point_id)
    query = query.order_by(col(Application.created_at).desc(), col(Application.id).desc()).limit(1)
    return (await session.scalars(query)).first()


async def follow(
    session: AsyncSession, application_id: int, channel: str, user_key: str, lang: str, now: datetime
) -> None:
    """This chat hears the application's news from now on (once, however often it asks)."""
    await session.execute(
        dialect_insert(session, ApplicationFollower)
        .values(application_id=application_id, channel=channel, user_key=user_key, lang=lang, created_at=now)
        .on_conflict_do_nothing(index_elements=["application_id", "channel", "user_key"])
    )


def account_label(application: Application) -> str:
    """The subscriber code, or the main code and the metering point, as staff and subscribers read them."""
    if application.metering_point_code:
        return f"{application.account_code} / {application.metering_point_code}"
    return application.account_code


async def by_number(session: AsyncSession, number: str) -> Application | None:
    return (await session.scalars(select(Application).where(Application.number == number))).first()


async def list_for_subscriber(
    session: AsyncSession, channel: str, user_key: str, phones: Sequence[str], limit: int = LIST_LIMIT
) -> Sequence[Application]:
    """Applications filed from this chat or for one of its verified phones on any channel, newest first."""
    mine = (col(Application.channel) == channel) & (col(Application.user_key) == user_key)
    condition = or_(mine, col(Application.applicant_phone).in_(list(phones))) if phones else mine
    query = (
        select(Application)
        .where(condition)
        .order_by(col(Application.created_at).desc(), col(Application.id).desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def list_all(
    session: AsyncSession, statuses: Sequence[str] = (), limit: int = 100
) -> Sequence[Application]:
    """For staff: the oldest open first when filtering, else the newest first."""
    query = select(Application)
    if statuses:
        query = query.where(col(Application.status).in_(statuses)).order_by(
            col(Application.created_at), col(Application.id)
        )
    else:
        query = query.order_by(col(Application.created_at).desc(), col(Application.id).desc())
    return (await session.scalars(query.limit(limit))).all()


async def histories(session: AsyncSession, application_ids: Sequence[int]) -> dict[int, list[StatusChange]]:
    """The status changes of several applications in one query, oldest first."""
    result: dict[int, list[StatusChange]] = defaultdict(list)
    if not application_ids:
        return result
    query = (
        select(StatusChange)
        .where(col(StatusChange.application_id).in_(application_ids))
        .order_by(col(StatusChange.created_at), col(StatusChange.id))
    )
    for change in (await session.scalars(query)).all():
        result[change.application_id].append(change)
    return result


async def change_status(
    session: AsyncSession,
    application_id: int,
    new: Status,
    *,
    actor: str,
    role: Role,
    note: str | None,
    now: datetime,
) -> Application:
    """Check the lifecycle, record the change, and queue the subscriber's message, all in one transaction."""
    query = select(Application).where(Application.id == application_id).with_for_update()
    application = (await session.scalars(query)).first()
    if application is None:
        raise IllegalTransition("status.error_not_found")
    current = Status(application.status)
    result = lifecycle.check(current, new, role, note)
    application.status = new.value
    application.updated_at = now
    if new in lifecycle.NEEDS_RESULT:
        application.result = result
    elif lifecycle.is_open(new):  # open again (reopened): its result is history, kept in the trail
        application.result = None
    session.add(
        StatusChange(
            application_id=application_id,
            old_status=current.value,
            new_status=new.value,
            actor=actor[:64],
            note=result,
            created_at=now,
        )
    )
    await tell(session, application, notices.status_changed(application.number, new, role, result), now)
    await session.flush()
    return application


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Application.status, func.count()).group_by(Application.status))
    return {status: count for status, count in rows}


async def rate(
    session: AsyncSession,
    application_id: int,
    stars: int,
    comment: str | None,
    *,
    channel: str,
    user_key: str,
    now: datetime,
) -> bool:
    """Store the subscriber's rating of a completed application, once: False when it was rated before
    (the first rating stands). A low one is told in the staff thread, in the same transaction."""
    if not 1 <= stars <= 5:
        raise ValueError(f"{stars} stars: a rating is 1 to 5")
    query = select(Application).where(Application.id == application_id).with_for_update()
    application = (await session.scalars(query)).first()
    if application is None:
        raise IllegalTransition("status.error_not_found")
    if not lifecycle.rateable(application.status):
        raise IllegalTransition("rating.not_completed", number=application.number)
    if await session.get(Rating, application_id) is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(
                Rating(
                    application_id=application_id,
                    stars=stars,
                    comment=comment,
                    channel=channel[:16],
                    user_key=user_key[:64],
                    created_at=now,
                )
            )
            await session.flush()
    except IntegrityError:  # rated from another chat at the same moment: that one stands
        return False
    await tell(session, application, notices.rated(application.number, stars, comment), now)
    return True


async def rating(session: AsyncSession, application_id: int) -> Rating | None:
    return await session.get(Rating, application_id)


async def reopen(
    session: AsyncSession, application_id: int, reason: str, *, actor: str, within: timedelta, now: datetime
) -> Application:
    """The subscriber reopens a completed application: within `within` of its completion, and once.
    The change carries the reason; the staff thread hears it (`notices.status_changed`). Its deadlines
    count from the reopening."""
    application = await staff.get_for_update(session, application_id)
    if application is None:
        raise IllegalTransition("status.error_not_found")
    trail = (await histories(session, [application_id]))[application_id]
    if any(change.new_status == Status.REOPENED for change in trail):
        raise IllegalTransition("reopen.already", number=application.number)
    completions = [as_utc(c.created_at) for c in trail if c.new_status == Status.COMPLETED]
    if not lifecycle.reopenable(application.status) or not completions:
        raise IllegalTransition("reopen.not_completed", number=application.number)
    if now >= max(completions) + within:
        raise IllegalTransition("reopen.too_late", number=application.number)
    reopened = await change_status(
        session, application_id, Status.REOPENED, actor=actor, role=Role.SUBSCRIBER, note=reason, now=now
    )
    # Its deadlines start again from now: the result is due anew, and is flagged once more if late.
    reopened.deadlines_from, reopened.take_flagged_at, reopened.done_flagged_at = now, None, None
    return reopened
