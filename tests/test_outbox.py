"""The outbox: retried until delivered or given up, in order, and at most once more after a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.app import build
from bot.channels.telegram import CHANNEL
from bot.core.service import Conversations
from bot.notify.outbox import GIVE_UP_AFTER, LEASE, OutboxWorker, backoff
from bot.staff.desk import StaffDesk
from dialogs.lifecycle import Status
from storage import conversations, outbox
from storage.db import Database
from storage.models import Notification
from tests.assembly import FAST, settings_in
from tests.chat import Chat, SmsRecorder, fill_residential
from tests.conftest import Clock
from tests.fake_telegram import TOKEN, FakeTelegram

SUBSCRIBER = 501


@dataclass
class Box:
    fake: FakeTelegram
    service: Conversations
    worker: OutboxWorker
    clock: Clock
    desk: StaffDesk

    async def rows(self) -> list[Notification]:
        async with self.service.db.transaction() as session:
            query = select(Notification).where(Notification.channel == CHANNEL).order_by(Notification.id)
            return list((await session.scalars(query)).all())

    def texts(self) -> list[str]:
        return [str(m.get("text")) for m in self.fake.sent_to(SUBSCRIBER)]


@pytest.fixture
async def box(fake: FakeTelegram, sample_db: Database, clock: Clock, tmp_path: Path) -> AsyncIterator[Box]:
    settings = settings_in(tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url)
    service = await build(settings, db=sample_db, clock=clock, code_sms=SmsRecorder(), pace=FAST)
    chat = Chat(service.conversations, user=str(SUBSCRIBER), channel=CHANNEL)
    await fill_residential(chat)
    await chat.press("send")
    yield Box(fake, service.conversations, service.worker, clock, StaffDesk(sample_db, clock=clock))
    await service.close()


async def test_a_status_change_is_delivered_once(box: Box) -> None:
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await box.worker.drain()
    await box.worker.drain()
    assert sum("icradadır" in t for t in box.texts()) == 1
    [row] = await box.rows()
    assert (row.state, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.provider_id == str(box.fake.sent_to(SUBSCRIBER)[-1]["message_id"])


async def test_a_429_waits_for_its_retry_after(box: Box) -> None:
    box.fake.fail_next(
        "sendmessage",
        429,
        {"ok": False, "error_code": 429, "description": "Too Many", "parameters": {"retry_after": 30}},
    )
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await box.worker.drain()
    [row] = await box.rows()
    assert row.state == "queued" and "429" in (row.last_error or "")
    assert row.next_attempt_at is not None
    box.clock.advance(seconds=29)
    await box.worker.drain()
    assert box.texts() == []  # not before retry_after
    box.clock.advance(seconds=2)
    await box.worker.drain()
    assert sum("icradadır" in t for t in box.texts()) == 1
    assert (await box.rows())[0].state == "sent"


async def test_three_server_errors_then_delivered_once(box: Box) -> None:
    for _ in range(3):
        box.fake.fail_next("sendmessage", 500, {"ok": False, "error_code": 500, "description": "Internal"})
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    for _ in range(4):
        await box.worker.drain()
        box.clock.advance(seconds=60)
    assert sum("icradadır" in t for t in box.texts()) == 1
    [row] = await box.rows()
    assert (row.state, row.attempts) == ("sent", 4)


async def test_later_messages_wait_behind_an_earlier_one(box: Box) -> None:
    box.fake.fail_next("sendmessage", 500, {"ok": False, "error_code": 500, "description": "Internal"})
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await box.desk.set_status("1", Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    await box.worker.drain()
    assert box.texts() == []  # the first failed; the second does not overtake it
    box.clock.advance(seconds=10)
    await box.worker.drain()
    texts = box.texts()
    assert len(texts) == 2 and "icradadır" in texts[0] and "Kabel dəyişdirildi." in texts[1]


async def test_a_blocked_subscriber_fails_for_good_and_is_recorded(box: Box) -> None:
    box.fake.fail_next(
        "sendmessage",
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    )
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await box.worker.drain()
    [row] = await box.rows()
    assert row.state == "failed" and "blocked" in (row.last_error or "")
    async with box.service.db.transaction() as session:
        conversation = await conversations.get(session, CHANNEL, str(SUBSCRIBER))
    assert conversation is not None and conversation.unreachable_reason == "blocked"
    box.clock.advance(hours=1)
    await box.worker.drain()
    assert [m for m, _ in box.fake.calls if m == "sendMessage"] == ["sendMessage"]  # tried once, never again


async def test_a_message_that_keeps_failing_is_given_up_with_its_reason(box: Box) -> None:
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    for _ in range(200):  # more than the attempts of a day at the longest backoff
        box.fake.fail_next("sendmessage", 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
    elapsed = timedelta()
    while elapsed <= GIVE_UP_AFTER + timedelta(hours=1):
        await box.worker.drain()
        box.clock.advance(minutes=15)
        elapsed += timedelta(minutes=15)
    [row] = await box.rows()
    assert row.state == "failed" and (row.last_error or "").startswith("gave up after")
    assert "Bad Gateway" in (row.last_error or "")


async def test_a_worker_killed_during_a_send_sends_it_once_after_the_lease(box: Box) -> None:
    await box.desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    async with box.service.db.transaction() as session:  # a worker claims it, then dies before sending
        [claimed] = await outbox.claim(session, [CHANNEL], box.clock(), LEASE)
    assert claimed.state == "sending"
    await box.worker.drain()
    assert box.texts() == []  # another worker leaves it alone while the lease holds
    box.clock.advance(seconds=LEASE.total_seconds() + 1)
    await box.worker.drain()
    await box.worker.drain()
    assert sum("icradadır" in t for t in box.texts()) == 1
    [row] = await box.rows()
    assert (row.state, row.attempts) == ("sent", 2)


def test_backoff_doubles_up_to_a_ceiling_and_honours_retry_after() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff(30) == 900.0
    assert backoff(1, retry_after=42) == 42.0
