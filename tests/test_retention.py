"""Retention: the periodic job of `isiqbot run` deletes what is needed only for a while, keeps the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.app import Service, build
from bot.channels.telegram import CHANNEL
from storage import codes, outbox
from storage.db import Database
from storage.models import Application, Notification, OtpRequest, ProcessedUpdate, StatusChange
from storage.retention import prune
from tests.assembly import FAST, settings_in
from tests.chat import Chat, SmsRecorder, fill_residential
from tests.conftest import Clock
from tests.fake_telegram import TOKEN, FakeTelegram


@pytest.fixture
async def service(
    fake: FakeTelegram, sample_db: Database, clock: Clock, tmp_path: Path
) -> AsyncIterator[Service]:
    settings = settings_in(tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, RETENTION_DAYS=30)
    built = await build(settings, db=sample_db, clock=clock, code_sms=SmsRecorder(), pace=FAST)
    yield built
    await built.close()


async def count(db: Database, model: type, *where: object) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_the_periodic_job_prunes_old_rows_and_keeps_the_record(service: Service, clock: Clock) -> None:
    db = service.db
    chat = Chat(service.conversations, user="501", channel=CHANNEL)
    await fill_residential(chat)
    await chat.press("send")
    await service.worker.drain()
    async with db.transaction() as session:
        codes.record(session, "+994996510079", "telegram:501", clock())
        for state in (outbox.SENT, outbox.QUEUED):  # news of no application: one sent, one still owed
            row = outbox.enqueue(
                session, channel=CHANNEL, user_key="777", kind="reply", payload={}, now=clock()
            )
            row.state = state
    sent_of_open = await count(db, Notification, Notification.application_id.is_not(None))  # type: ignore[union-attr]
    assert sent_of_open > 0 and await count(db, ProcessedUpdate) > 0

    clock.advance(days=31)
    await chat.command("start")  # an update of today
    await service.worker.tick()  # the periodic jobs, as `isiqbot run` runs them

    assert await count(db, ProcessedUpdate) == 1  # only today's
    assert await count(db, OtpRequest) == 0
    assert await count(db, Notification, Notification.user_key == "777") == 1  # the one still owed
    # The application is open: its notifications stay, for its card's delivery marks.
    assert await count(db, Notification, Notification.application_id.is_not(None)) == sent_of_open  # type: ignore[union-attr]
    assert await count(db, Application) == 1 and await count(db, StatusChange) >= 1  # kept for good


async def test_a_closed_applications_news_goes_and_a_backlog_goes_a_batch_at_a_time(
    sample_db: Database, clock: Clock
) -> None:
    async with sample_db.transaction() as session:
        for n in range(5):
            row = outbox.enqueue(
                session, channel=CHANNEL, user_key=str(n), kind="status", payload={}, now=clock()
            )
            row.state = outbox.SENT
        session.add(ProcessedUpdate(channel=CHANNEL, update_id="1", created_at=clock()))
    clock.advance(days=31)
    async with sample_db.transaction() as session:
        assert await prune(session, clock(), batch=2) == {
            "processed_update": 1,
            "notification": 2,
            "otp_request": 0,
        }
    async with sample_db.transaction() as session:
        assert (await prune(session, clock(), batch=2))["notification"] == 2
        assert (await prune(session, clock(), batch=2))["notification"] == 1
        assert await prune(session, clock(), batch=2) == {
            "processed_update": 0,
            "notification": 0,
            "otp_request": 0,
        }
