"""Visit times: a proposal per application, the subscriber's pick, and the reminders owed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dialogs import lifecycle
from dialogs.ports import VisitChoice, VisitView, Window
from storage.db import as_utc
from storage.models import Application, Visit


def windows_of(visit: Visit) -> tuple[Window, ...]:
    return tuple(
        (as_utc(datetime.fromisoformat(start)), as_utc(datetime.fromisoformat(end)))
        for start, end in visit.windows
    )


def proposal_of(visit: Visit) -> int:
    """The proposal's name on the subscriber's buttons: the second it was made."""
    return int(as_utc(visit.proposed_at).timestamp())


def view(visit: Visit | None) -> VisitView | None:
    if visit is None:
        return None
    return VisitView(proposal_of(visit), windows_of(visit), visit.chosen, visit.declined_at is not None)


def chosen_window(visit: Visit | None) -> Window | None:
    if visit is None or visit.chosen is None:
        return None
    windows = windows_of(visit)
    return windows[visit.chosen] if 0 <= visit.chosen < len(windows) else None


async def get(session: AsyncSession, application_id: int) -> Visit | None:
    return await session.get(Visit, application_id)


async def propose(
    session: AsyncSession, application_id: int, windows: Sequence[Window], by: str, now: datetime
) -> Visit:
    """Store a proposal; it replaces the last one, with its pick and its reminders."""
    visit = await session.get(Visit, application_id, with_for_update=True)
    stamp = now.replace(microsecond=0)
    if visit is None:
        visit = Visit(application_id=application_id, proposed_by=by[:128])
        session.add(visit)
    elif as_utc(visit.proposed_at) >= stamp:
        # Within the same second as the last one: named a second later, so the buttons of the
        # replaced proposal never pick from this one.
        stamp = as_utc(visit.proposed_at).replace(microsecond=0) + timedelta(seconds=1)
    visit.windows = [[start.isoformat(), end.isoformat()] for start, end in windows]
    visit.proposed_by, visit.proposed_at = by[:128], stamp
    visit.chosen = visit.chosen_start = visit.chosen_at = visit.declined_at = None
    visit.reminded_subscriber_at = visit.reminded_staff_at = None
    await session.flush()
    return visit


async def choose(
    session: AsyncSession, application: Application, proposal: int, index: int | None, now: datetime
) -> tuple[VisitChoice, Visit | None]:
    """The subscriber's pick (None: none suits), once per proposal; the caller holds the application's
    row lock, so two chats picking at once are decided one after the other."""
    assert application.id is not None
    visit = await session.get(Visit, application.id, with_for_update=True)
    if not lifecycle.is_open(application.status):
        return VisitChoice("closed"), visit
    if visit is None or proposal_of(visit) != proposal:
        return VisitChoice("replaced"), visit
    if visit.chosen is not None or visit.declined_at is not None:
        return VisitChoice("already"), visit
    if index is None:
        visit.declined_at = now
        await session.flush()
        return VisitChoice("declined"), visit
    windows = windows_of(visit)
    if not 0 <= index < len(windows):
        return VisitChoice("replaced"), visit
    if windows[index][0] <= now:
        return VisitChoice("past"), visit
    visit.chosen, visit.chosen_start, visit.chosen_at = index, windows[index][0], now
    await session.flush()
    return VisitChoice("ok", windows[index]), visit


async def due_reminders(
    session: AsyncSession, now: datetime, ahead: timedelta
) -> Sequence[tuple[Visit, Application]]:
    """Picked visits of open applications starting within `ahead`, not both reminded yet."""
    query = (
        select(Visit, Application)
        .join(Application, col(Application.id) == col(Visit.application_id))
        .where(
            col(Visit.chosen_start).is_not(None),
            col(Visit.chosen_start) > now,
            col(Visit.chosen_start) <= now + ahead,
            col(Visit.reminded_subscriber_at).is_(None) | col(Visit.reminded_staff_at).is_(None),
            col(Application.status).in_([s.value for s in lifecycle.OPEN]),
        )
        .order_by(col(Visit.chosen_start))
    )
    return [(visit, app) for visit, app in (await session.execute(query)).all()]


async def claim(session: AsyncSession, visit: Visit, column: str, now: datetime) -> bool:
    """Mark one side reminded; False when another replica did it first (it sent that reminder)."""
    flag = getattr(Visit, column)
    done = await session.execute(
        update(Visit)
        .where(col(Visit.application_id) == visit.application_id, col(flag).is_(None))
        .values({column: now})
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(done, "rowcount", 0))
