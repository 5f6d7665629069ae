"""What staff do with applications, whatever the front (terminal today, the staff chat and CLI next)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from bot.core.service import Clock, system_clock
from dialogs.lifecycle import OPEN, IllegalTransition, Role, Status
from storage import applications
from storage.db import Database
from storage.models import Application, StatusChange

_SERIAL = re.compile(r"^\d{1,6}$")


@dataclass(frozen=True, slots=True)
class Card:
    application: Application
    history: Sequence[StatusChange]


class StaffDesk:
    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock

    async def list(self, open_only: bool = True) -> Sequence[Application]:
        async with self.db.transaction() as session:
            statuses = [s.value for s in OPEN] if open_only else []
            return await applications.list_all(session, statuses)

    async def card(self, ref: str) -> Card | None:
        async with self.db.transaction() as session:
            app = await _find(session, ref)
            if app is None or app.id is None:
                return None
            history = (await applications.histories(session, [app.id]))[app.id]
            return Card(app, history)

    async def set_status(self, ref: str, status: Status, actor: str, note: str | None) -> Application:
        """Change the status; raises IllegalTransition (with a message key) when it may not happen."""
        async with self.db.transaction() as session:
            app = await _find(session, ref)
            if app is None or app.id is None:
                raise IllegalTransition("status.error_not_found")
            return await applications.change_status(
                session, app.id, status, actor=actor, role=Role.STAFF, note=note, now=self.clock()
            )


async def _find(session: AsyncSession, ref: str) -> Application | None:
    """By full number (TX-2026-000001) or by its serial (1 or 000001), newest year first."""
    ref = ref.strip().upper()
    if _SERIAL.fullmatch(ref):
        query = (
            select(Application)
            .where(col(Application.number).endswith(f"-{int(ref):06d}"))
            .order_by(col(Application.created_at).desc())
        )
        return (await session.scalars(query)).first()
    return await applications.by_number(session, ref)
