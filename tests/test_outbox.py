"""The outbox: retried until delivered or given up, in order, and at most once more after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from bot.app import build
from bot.channels.telegram import CHANNEL
from bot.core.service import Conversations
from bot.notify.outbox import GIVE_UP_AFTER, LEASE, OutboxWorker, backoff
from bot.staff.desk import StaffDesk
from dialogs.lifecycle import Status
from storage import conversations, outbox
from storage.db import Database
from storage.migrate import config, upgrade
from storage.models import Application, Notification
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


# The claim itself, on both databases: lanes, leases, and (on PostgreSQL) workers claiming at once.

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CHATS = [CHANNEL, outbox.SMS, outbox.STAFF]


async def _application(session: AsyncSession, number: int) -> int:
    application = Application(
        number=f"T-{number}",
        channel=CHANNEL,
        user_key=str(number),
        applicant_phone="+994500000000",
        lang="az",
        kind="residential",
        account_code="1",
        reason="no_power",
        description="-",
        mobile="+994500000000",
        status="registered",
    )
    session.add(application)
    await session.flush()
    assert application.id is not None
    return application.id


async def _queue(db: Database, *lanes: tuple[str, str, int | None], at: datetime = NOW) -> list[int]:
    """One row per entry (channel, user_key, application_id), in this order: the ids."""
    async with db.transaction() as session:
        rows = [
            outbox.enqueue(
                session, channel=c, user_key=u, kind="status", payload={}, now=at, application_id=a
            )
            for c, u, a in lanes
        ]
        await session.flush()
    return [row.id for row in rows if row.id is not None]


async def _claim(db: Database, now: datetime = NOW, limit: int = 50) -> list[int]:
    async with db.transaction() as session:
        return [row.id for row in await outbox.claim(session, CHATS, now, LEASE, limit) if row.id is not None]


async def _sent(db: Database, *ids: int) -> None:
    async with db.transaction() as session:
        for notification_id in ids:
            await outbox.mark_sent(session, notification_id, None, NOW)


async def test_a_claim_takes_each_lane_head_once_and_marks_it_sending(db: Database) -> None:
    a1, b1, a2, c1, b2 = await _queue(
        db,
        (CHANNEL, "1", None),
        (CHANNEL, "2", None),
        (CHANNEL, "1", None),
        (outbox.SMS, "1", None),
        (CHANNEL, "2", None),
    )
    assert sorted(await _claim(db)) == [a1, b1, c1]  # the same user_key on another channel: its own lane
    async with db.transaction() as session:
        rows = {row.id: row for row in (await session.scalars(select(Notification))).all()}
    assert (rows[a1].state, rows[a1].attempts, rows[a1].claimed_at is not None) == ("sending", 1, True)
    assert rows[a2].state == rows[b2].state == "queued"
    assert await _claim(db) == []  # the heads are being sent: their lanes wait
    await _sent(db, a1, c1)
    assert await _claim(db) == [a2]


async def test_a_lane_waiting_for_its_retry_holds_back_only_itself(db: Database) -> None:
    """Even with more rows behind it than a claim takes, and written before every other lane's."""
    waiting = await _queue(db, *[(CHANNEL, "1", None)] * 8)
    later = await _queue(db, (CHANNEL, "2", None), (outbox.SMS, "3", None), at=NOW + timedelta(seconds=1))
    assert await _claim(db, NOW + timedelta(seconds=1), limit=2) == [waiting[0], later[0]]  # due order
    async with db.transaction() as session:
        await outbox.retry_later(session, waiting[0], "500", NOW + timedelta(minutes=5))
    await _sent(db, later[0])
    assert await _claim(db, NOW + timedelta(seconds=2), limit=2) == [later[1]]
    await _sent(db, later[1])
    assert await _claim(db, NOW + timedelta(minutes=5), limit=2) == [waiting[0]]  # its retry, then the rest


async def test_a_staff_chat_has_a_lane_per_application(db: Database) -> None:
    async with db.transaction() as session:
        first, second = await _application(session, 1), await _application(session, 2)
    chat = "-100"
    card, photo, other_card, notice, notice_2 = await _queue(
        db,
        (outbox.STAFF, chat, first),
        (outbox.STAFF, chat, first),
        (outbox.STAFF, chat, second),
        (outbox.STAFF, chat, None),
        (outbox.STAFF, chat, None),
    )
    assert sorted(await _claim(db)) == [card, other_card, notice]  # no application: one lane of the chat
    async with db.transaction() as session:
        await outbox.retry_later(session, card, "429", NOW + timedelta(minutes=1))
    await _sent(db, other_card, notice)
    assert await _claim(db) == [notice_2]  # the card waiting holds back only its application's photo
    await _sent(db, notice_2)
    assert await _claim(db, NOW + timedelta(minutes=1)) == [card]
    await _sent(db, card)
    assert await _claim(db, NOW + timedelta(minutes=1)) == [photo]


async def test_a_lease_that_ran_out_is_claimed_again_and_the_lane_still_waits(db: Database) -> None:
    head, second = await _queue(db, (CHANNEL, "1", None), (CHANNEL, "1", None))
    assert await _claim(db) == [head]
    assert await _claim(db, NOW + LEASE - timedelta(seconds=1)) == []  # the lease holds till its end
    assert await _claim(db, NOW + LEASE + timedelta(seconds=1)) == [head]  # its worker died: taken again
    async with db.transaction() as session:
        row = await session.get(Notification, head)
        assert row is not None and (row.state, row.attempts) == ("sending", 2)
        row.claimed_at = None  # `sending` with no lease at all (written by hand): due at once
        other = outbox.enqueue(session, channel=outbox.SMS, user_key="9", kind="k", payload={}, now=NOW)
        other.next_attempt_at = None  # queued and never scheduled: due at once
        await session.flush()
    later = NOW + LEASE + timedelta(seconds=2)
    assert sorted(await _claim(db, later)) == sorted([head, other.id or 0])
    await _sent(db, head)
    assert await _claim(db, later) == [second]


async def test_workers_claiming_at_once_take_disjoint_heads(db: Database, backend: str) -> None:
    """While one worker's claim is not committed, another claims too: it skips the rows the first holds
    and takes no lane's second row; with the old global lock it would have waited for the first."""
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: its claims cannot overlap")
    ids = await _queue(db, *[(CHANNEL, str(lane % 30), None) for lane in range(90)])
    heads, seconds = set(ids[:30]), set(ids[30:60])
    async with db.sessions() as first_session, first_session.begin():
        first = await outbox.claim(first_session, CHATS, NOW, LEASE, 20)
        async with db.sessions() as second_session, second_session.begin():
            second = await asyncio.wait_for(outbox.claim(second_session, CHATS, NOW, LEASE, 20), 10)
            taken_first, taken_second = {row.id for row in first}, {row.id for row in second}
        # the second committed first; the first still holds its rows
        third = await _claim(db)
    assert len(taken_first) == 20 and len(taken_second) == 10
    assert taken_first | taken_second == heads and not taken_first & taken_second
    assert third == []  # every head is being sent; no second row goes before its head
    await _sent(db, *heads)
    assert set(await _claim(db)) == seconds


async def test_many_workers_claiming_at_once_keep_every_lane_in_order(db: Database, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: its claims cannot overlap")
    lanes = [(CHANNEL, str(n % 25), None) for n in range(100)] + [
        (outbox.SMS, str(n % 15), None) for n in range(60)
    ]
    ids = await _queue(db, *lanes)
    lane_of = dict(zip(ids, [(c, u) for c, u, _ in lanes], strict=True))
    order: list[int] = []  # ids in the order their claims committed
    sending: set[int] = set()  # ids whose marking as sent has begun

    async def worker() -> None:
        for _ in range(40):
            async with db.transaction() as session:
                claimed = [row.id for row in await outbox.claim(session, CHATS, NOW, LEASE, 7) if row.id]
            for row_id in claimed:  # an older row of the lane not even being marked sent: out of order
                older = [i for i in ids if lane_of[i] == lane_of[row_id] and i < row_id and i not in sending]
                assert older == [], f"{row_id} claimed while {older} of its lane were not sent"
            order.extend(claimed)
            sending.update(claimed)
            await _sent(db, *claimed)

    await asyncio.gather(*(worker() for _ in range(4)))
    assert sorted(order) == sorted(ids) and len(order) == len(set(order))  # each once, none left


async def test_the_outbox_indexes_go_back_and_come_again(db: Database) -> None:
    def indexes(connection: Connection) -> set[str]:
        return {i["name"] for i in inspect(connection).get_indexes("notification") if i["name"]}

    def downgrade(connection: Connection) -> None:
        cfg = config(db.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0008")

    claim_indexes = {"ix_notification_due", "ix_notification_lane", "ix_notification_staff_lane"}
    async with db.engine.begin() as connection:
        assert claim_indexes <= await connection.run_sync(indexes)
        await connection.run_sync(downgrade)
        assert not claim_indexes & await connection.run_sync(indexes)
    await upgrade(db.engine)
    async with db.engine.connect() as connection:
        assert claim_indexes <= await connection.run_sync(indexes)
