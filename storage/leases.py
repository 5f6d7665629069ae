"""Leases: a duty that one process of several does at a time, taken over when its holder stops.

The holder renews its lease at every turn of its periodic job; a lease not renewed before it
expires may be taken by any process. Two processes never both hold it: taking and renewing are
one conditional statement each, and the primary key settles a race to create it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import dialect_insert
from storage.models import Lease


async def hold(session: AsyncSession, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name` for `holder` until `now + ttl`; whether `holder` holds it."""
    renewed = await session.execute(
        update(Lease)
        .where(col(Lease.name) == name, or_(col(Lease.holder) == holder, col(Lease.expires_at) < now))
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if getattr(renewed, "rowcount", 0):
        return True
    created = await session.execute(
        dialect_insert(session, Lease)
        .values(name=name, holder=holder, expires_at=now + ttl)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return bool(getattr(created, "rowcount", 0))


async def release(session: AsyncSession, name: str, holder: str, now: datetime) -> None:
    """Give the lease up at a clean stop, so another process takes it at its next turn."""
    await session.execute(
        update(Lease)
        .where(col(Lease.name) == name, col(Lease.holder) == holder)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
