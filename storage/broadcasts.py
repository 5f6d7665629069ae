"""Broadcasts: one message from staff to every chat with an open application in a region, or on an
outage (its region, its metering points, and the chats waiting for its news).

The audience is read in three queries however large it is, and each chat gets one copy, in its
language, as an outbox row of kind `broadcast`: the outbox's pacing keeps it within Telegram's budget
(bulk news leaves room for answers) and retries it as any other news. The copies and the record of
the broadcast are written in one transaction: all of them go, or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dialogs.lifecycle import OPEN
from locales import DEFAULT_LANGUAGE
from storage import outbox
from storage.models import Application, ApplicationFollower, Broadcast, Outage, OutageWatch

NEWS = "broadcast"  # the outbox's kind of a broadcast's copy
OPEN_VALUES = tuple(s.value for s in OPEN)
REPEAT_WINDOW = timedelta(hours=1)  # the same words to the same audience this soon is a second press


@dataclass(frozen=True, slots=True)
class Chat:
    channel: str
    user_key: str
    lang: str


async def audience(session: AsyncSession, region: str | None, outage: Outage | None) -> list[Chat]:
    """The chats to tell, once each: the chat of every open application in the region (or in the
    outage's region, or on its metering points), the chats that follow those, and, for an outage, the
    chats waiting for its news. A chat's language is that of the first place it is found."""
    regions = [r for r in (region, outage.region if outage else None) if r]
    points = list(outage.points) if outage else []
    where = []
    if regions:
        where.append(col(Application.region).in_(regions))
    if points:
        where.append(col(Application.metering_point_code).in_(points))
    found: list[Chat] = []
    if where:
        apps = select(Application.id, Application.channel, Application.user_key, Application.lang).where(
            col(Application.status).in_(OPEN_VALUES), or_(*where)
        )
        rows = (await session.execute(apps.order_by(col(Application.id)))).all()
        found += [Chat(channel, user_key, lang) for _, channel, user_key, lang in rows]
        ids = [app_id for app_id, *_ in rows]
        if ids:
            followers = select(ApplicationFollower).where(col(ApplicationFollower.application_id).in_(ids))
            found += [Chat(f.channel, f.user_key, f.lang) for f in await session.scalars(followers)]
    if outage is not None:
        watchers = select(OutageWatch).where(OutageWatch.outage_id == outage.id)
        found += [Chat(w.channel, w.user_key, w.lang) for w in await session.scalars(watchers)]
    once: dict[tuple[str, str], Chat] = {}
    for chat in found:
        if chat.channel not in outbox.NOT_CHATS:
            once.setdefault((chat.channel, chat.user_key), chat)
    return list(once.values())


def text_for(texts: Mapping[str, str], lang: str) -> str:
    """The chat's language's words, else the Azerbaijani ones."""
    return texts.get(lang) or texts[DEFAULT_LANGUAGE]


async def repeated(
    session: AsyncSession, region: str | None, outage_id: int | None, texts: Mapping[str, str], now: datetime
) -> Broadcast | None:
    """The broadcast of the same words to the same audience in the last hour, if there was one."""
    query = select(Broadcast).where(
        col(Broadcast.created_at) >= now - REPEAT_WINDOW,
        col(Broadcast.region).is_(None) if region is None else col(Broadcast.region) == region,
        col(Broadcast.outage_id).is_(None) if outage_id is None else col(Broadcast.outage_id) == outage_id,
    )
    return next((b for b in await session.scalars(query) if b.texts == dict(texts)), None)


async def send(
    session: AsyncSession,
    *,
    region: str | None,
    outage: Outage | None,
    texts: Mapping[str, str],
    actor: str,
    chats: Sequence[Chat],
    now: datetime,
) -> Broadcast:
    """Record the broadcast and queue a copy for each chat."""
    broadcast = Broadcast(
        region=region,
        outage_id=outage.id if outage else None,
        texts=dict(texts),
        actor=actor[:64],
        recipients=len(chats),
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    for chat in chats:
        outbox.enqueue(
            session,
            channel=chat.channel,
            user_key=chat.user_key,
            kind=NEWS,
            payload={"broadcast": broadcast.id, "text": text_for(texts, chat.lang)},
            now=now,
            lang=chat.lang,
        )
    return broadcast


async def recent(session: AsyncSession, limit: int = 20) -> Sequence[Broadcast]:
    query = (
        select(Broadcast).order_by(col(Broadcast.created_at).desc(), col(Broadcast.id).desc()).limit(limit)
    )
    return (await session.scalars(query)).all()
