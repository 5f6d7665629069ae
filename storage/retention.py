"""Retention: what the service needs only for a while is deleted after it, a batch at a time.

Kept for good: applications, their status changes and staff actions (the audit trail), people,
accounts and conversations. Deleted once older than the retention age:

- processed update ids: a platform re-delivers an update within minutes or hours, not months;
- sent and failed notifications, of closed applications or of none (a card's delivery marks of an
  open application stay);
- the records of one-time codes sent: their limits look back a day at most.

Each call deletes at most `batch` rows of each kind, oldest first, in short statements: a backlog
is worked off over the periodic job's next turns without holding the hot tables for long.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage import outbox
from storage.models import Application, Notification, OtpRequest, ProcessedUpdate
from storage.staff import OPEN_VALUES

BATCH = 1000


async def prune(session: AsyncSession, before: datetime, batch: int = BATCH) -> dict[str, int]:
    """Delete up to `batch` rows of each kind made before `before`; how many went, by table."""
    updates = ProcessedUpdate.__table__  # type: ignore[attr-defined]
    old_updates = (
        select(updates.c.channel, updates.c.update_id)
        .where(updates.c.created_at < before)
        .order_by(updates.c.created_at)
        .limit(batch)
    )
    gone_updates = await session.execute(
        delete(updates).where(tuple_(updates.c.channel, updates.c.update_id).in_(old_updates))
    )
    still_open = select(Application.id).where(col(Application.status).in_(OPEN_VALUES))
    old_notifications = (
        select(Notification.id)
        .where(
            col(Notification.state).in_((outbox.SENT, outbox.DELIVERED, outbox.FAILED)),
            col(Notification.created_at) < before,
            col(Notification.application_id).is_(None) | col(Notification.application_id).not_in(still_open),
        )
        .order_by(col(Notification.id))
        .limit(batch)
    )
    old_codes = (
        select(OtpRequest.id)
        .where(col(OtpRequest.created_at) < before)
        .order_by(col(OtpRequest.id))
        .limit(batch)
    )
    return {
        "processed_update": _count(gone_updates),
        "notification": await _delete_ids(session, Notification, old_notifications),
        "otp_request": await _delete_ids(session, OtpRequest, old_codes),
    }


async def _delete_ids(session: AsyncSession, model: type[Notification] | type[OtpRequest], ids: Any) -> int:
    """Delete the rows of `model` whose ids `ids` selects; how many went."""
    statement = delete(model).where(col(model.id).in_(ids)).execution_options(synchronize_session=False)
    return _count(await session.execute(statement))


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
