"""One-time codes sent, for the limits that protect phones from floods of SMS."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.models import OtpRequest


async def sent_to(session: AsyncSession, phone: str, since: datetime) -> Sequence[datetime]:
    """When codes went to this phone since `since`, oldest first."""
    query = (
        select(OtpRequest.created_at)
        .where(OtpRequest.phone == phone, col(OtpRequest.created_at) >= since)
        .order_by(col(OtpRequest.created_at))
    )
    return (await session.scalars(query)).all()


async def count_by(session: AsyncSession, requester: str, since: datetime) -> int:
    query = select(func.count()).where(OtpRequest.requester == requester, col(OtpRequest.created_at) >= since)
    return int(await session.scalar(query) or 0)


def record(session: AsyncSession, phone: str, requester: str, at: datetime) -> None:
    session.add(OtpRequest(phone=phone, requester=requester[:96], created_at=at))
