"""Known outages: declared by staff for a region or for metering points, closed when power is back.

A subscriber who reports "no power" for an account an open outage covers is told so before filing,
and may ask to be told when it is over; closing the outage queues that news for each of them.
There are few open outages at a time, so they are matched here rather than in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage import outbox
from storage.db import as_utc, dialect_insert
from storage.models import Account, MeteringPoint, Outage, OutageWatch

NEWS = "outage_over"  # the outbox's kind of the news that an outage is over


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def point_key(code: str) -> str:
    """A metering point code as compared: "un 0002" and "UN-0002" are one point."""
    return "".join(c for c in code.upper() if c.isalnum())


async def declare(
    session: AsyncSession,
    *,
    region: str | None,
    points: Sequence[str],
    until: datetime,
    note: str | None,
    declared_by: str,
    now: datetime,
) -> Outage:
    outage = Outage(
        region=region.strip() if region else None,
        points=sorted(set(points)),
        until=until,
        note=note,
        declared_by=declared_by[:64],
        created_at=now,
    )
    session.add(outage)
    await session.flush()
    return outage


async def open_ones(session: AsyncSession) -> Sequence[Outage]:
    query = select(Outage).where(col(Outage.closed_at).is_(None)).order_by(col(Outage.id))
    return (await session.scalars(query)).all()


async def affecting(
    session: AsyncSession, account_id: int, point_id: int | None, now: datetime
) -> Outage | None:
    """The open outage that covers this account (its region) or metering point, whose expected end
    is still ahead; the one ending last when several do."""
    candidates = [o for o in await open_ones(session) if as_utc(o.until) > now]
    if not candidates:
        return None
    account = await session.get(Account, account_id)
    point = await session.get(MeteringPoint, point_id) if point_id is not None else None
    key = point_key(point.code) if point is not None else None
    covering = [
        o
        for o in candidates
        if (account is not None and _same(o.region, account.region))
        or (key is not None and key in {point_key(p) for p in o.points})
    ]
    return max(covering, key=lambda o: as_utc(o.until), default=None)


async def watch(
    session: AsyncSession, outage_id: int, channel: str, user_key: str, lang: str, now: datetime
) -> None:
    """This chat is told when the outage is over (once, however often it asks)."""
    await session.execute(
        dialect_insert(session, OutageWatch)
        .values(outage_id=outage_id, channel=channel, user_key=user_key, lang=lang, created_at=now)
        .on_conflict_do_nothing(index_elements=["outage_id", "channel", "user_key"])
    )


async def close(session: AsyncSession, outage_id: int, now: datetime) -> int | None:
    """Close the outage and queue the news for every chat that asked: how many. None when there is
    no such open outage (closed already, or never declared)."""
    closed = await session.execute(
        update(Outage)
        .where(col(Outage.id) == outage_id, col(Outage.closed_at).is_(None))
        .values(closed_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(closed, "rowcount", 0):
        return None
    watchers = (await session.scalars(select(OutageWatch).where(OutageWatch.outage_id == outage_id))).all()
    for watcher in watchers:
        outbox.enqueue(
            session,
            channel=watcher.channel,
            user_key=watcher.user_key,
            kind=NEWS,
            payload={"key": "outage.over", "params": {}},
            now=now,
            lang=watcher.lang,
        )
    return len(watchers)


async def watchers(session: AsyncSession, outage_ids: Sequence[int]) -> dict[int, int]:
    """How many chats wait for the news of each outage."""
    query = (
        select(OutageWatch.outage_id, func.count())
        .where(col(OutageWatch.outage_id).in_(outage_ids))
        .group_by(col(OutageWatch.outage_id))
    )
    return {outage_id: count for outage_id, count in await session.execute(query)}


async def points_named(session: AsyncSession, typed: Sequence[str]) -> tuple[list[str], list[str]]:
    """The registry's codes of the metering points staff typed, and what matched none."""
    wanted = {point_key(code): code for code in typed}
    query = select(MeteringPoint.code).distinct()
    found = {point_key(code): code for code in await session.scalars(query) if point_key(code) in wanted}
    return sorted(set(found.values())), [code for key, code in wanted.items() if key not in found]


async def regions(session: AsyncSession) -> list[str]:
    """The regions the registry names, for checking what staff type."""
    query = select(Account.region).where(col(Account.region).is_not(None)).distinct()
    return sorted(str(r) for r in await session.scalars(query) if r)


async def region_named(session: AsyncSession, typed: str) -> tuple[str | None, list[str]]:
    """The registry's name of the region staff typed, in any case (None when it names none), and the
    regions the registry has, to suggest."""
    known = await regions(session)
    wanted = " ".join(typed.split()).casefold()
    return next((r for r in known if r.casefold() == wanted), None), known
