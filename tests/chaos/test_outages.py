"""Chaos: what `isiqbot run` depends on goes away for a while and comes back; the process is never
restarted by hand, and once everything is back nothing is missing and nothing came twice.

1. The SMS gateway answers 503, the SMTP server 451 and the Bot API 502 and then 429 (with
   `retry_after`) for 20 s while a crowd files by polling: afterwards every application has its
   registration SMS, e-mail and staff card exactly once, and every subscriber got through.
2. PostgreSQL goes away for 20 s (a TCP proxy in front of it closes its connections and refuses new
   ones) while subscribers file by webhook: the updates are answered 503 and posted again until they
   are taken; afterwards every application is there once, with its registration SMS once, and the
   same process answers /readyz 200. With it, a focused test: a send whose outcome cannot be
   written (the database went away while it was on the wire) is written once the database is back,
   not sent a second time when its lease runs out.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from bot.notify import outbox as worker
from bot.notify.outbox import LEASE, OutboxWorker
from storage import outbox
from storage.db import Database, as_utc
from storage.migrate import upgrade
from storage.models import Application, Notification
from tests.chaos.conftest import figure
from tests.chaos.crowd import SECRET, Subscriber, Webhooks, people, registry_csv
from tests.chaos.test_kills import DEPARTMENT_CHATS, applications, import_registry, notifications
from tests.conftest import Clock
from tests.processes import free_port
from tests.running import Isiqbot, World, eventually

OUTAGE = 20.0  # seconds
NUMBER = re.compile(r"TX-\d{4}-\d{6}")  # an application's number, as texts quote it
RETRY_AFTER = 5  # what the Bot API's 429s ask for
WITHIN = 180.0  # how long everything may take to arrive once the outage is over (backoff: up to ~40 s)
PATIENCE = 10.0  # how long a person waits for the bot's answer before doing something again
QUIET = 1.5  # once it answers, how long they let it talk (1 message a second a chat) before reading


class Patient(Subscriber):
    """A subscriber who reads what the bot says before acting again: they wait for its answer (at
    most PATIENCE s) and, once it talks, until it has finished (QUIET s without a new message).

    `Subscriber` acts at once on the last question it sees; while the Bot API is down nothing comes,
    so it would spend its 80 actions in the seconds of an outage, and afterwards act on each stale
    question of the backlog as it trickles in, adding to the backlog faster than it drains.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.answers = 0
        self.scanned = 0  # how far `fake.sent` has been looked through (it only grows)

    def _count(self) -> int:
        sent = self.fake.sent
        while self.scanned < len(sent):
            self.answers += int(sent[self.scanned]["chat_id"]) == self.person.user_id
            self.scanned += 1
        return self.answers

    async def act(self, update: dict[str, Any]) -> None:
        before = self._count()
        await super().act(update)
        changed = time.monotonic()
        last = before
        for _ in range(int((PATIENCE + 120) / 0.25)):  # bounded, however long the bot goes on
            count, now = self._count(), time.monotonic()
            if count != last:
                last, changed = count, now
            elif now - changed >= (QUIET if count != before else PATIENCE):
                return
            await asyncio.sleep(0.25)


def cards(world: World) -> list[dict[str, object]]:
    return [
        m for chat in DEPARTMENT_CHATS for m in world.telegram.sent_to(chat) if "inline_keyboard" in str(m)
    ]


def deliveries(world: World, numbers: Sequence[str]) -> dict[str, Counter[str]]:
    """How often each application's number is in a registration SMS, an e-mail's subject, a staff card."""
    wanted = set(numbers)

    def count(texts: list[str]) -> Counter[str]:
        return Counter(n for text in texts for n in set(NUMBER.findall(text)) if n in wanted)

    return {
        "sms": count([str(m["text"]) for m in world.sms.received]),
        "email": count([str(m["Subject"]) for m in world.mail.messages]),
        "card": count([str(m.get("text")) for m in cards(world)]),
    }


def all_delivered(world: World, numbers: Sequence[str], channels: Sequence[str]) -> bool:
    found = deliveries(world, numbers)
    return all(found[channel][n] >= 1 for channel in channels for n in numbers)


async def ready(service: Isiqbot, within: float) -> int:
    """/readyz's status once it is 200, or the last one after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            status, _ = await service.get("/readyz")
        except OSError:
            status = 0
        if status == 200 or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.5)


async def drained(db: Database, within: float) -> Counter[str]:
    """The outbox by state once nothing is left to send (the answers held back included), or after
    `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        states = Counter(n.state for n in await notifications(db))
        if not states[outbox.QUEUED] + states[outbox.SENDING] or time.monotonic() > deadline:
            return states
        await asyncio.sleep(1)


def doubled(found: list[Application]) -> int:
    return sum(1 for n in Counter(a.user_key for a in found).values() if n > 1)


def tracebacks(service: Isiqbot) -> int:
    return service.log.count("Traceback")


async def test_sms_smtp_and_the_bot_api_down_for_a_while_then_back(
    tmp_path: Path, world: World, db: Database, db_url: str, scale: int
) -> None:
    service = Isiqbot(tmp_path, world, db_url, LOG_LEVEL="WARNING")
    crowd = people(scale)
    await asyncio.to_thread(import_registry, service, registry_csv(crowd, tmp_path / "crowd.csv"))
    await service.start()
    assert service.process is not None
    pid = service.process.pid
    try:
        subscribers = [Patient(world.telegram, person) for person in crowd]
        began = time.monotonic()
        filing = asyncio.gather(*(s.file() for s in subscribers))
        # Everything goes down as the first subscriber presses "Send": the applications are
        # registered, their SMS, e-mails and cards owed, and the answers held, while it is down.
        await eventually(lambda: any(s.sends for s in subscribers), "the first Send", within=120)
        started, down_at = time.monotonic(), datetime.now(UTC)
        back = started + OUTAGE
        world.sms.down_until = back
        world.mail.refuse_until = back
        world.telegram.down_until = started + OUTAGE / 2  # 502 for the first half,
        world.telegram.throttled_until = back  # then 429 with retry_after
        world.telegram.retry_after = RETRY_AFTER
        await asyncio.wait_for(filing, WITHIN + OUTAGE)
        up_at = down_at + timedelta(seconds=OUTAGE)
        filed_in = time.monotonic() - began
        numbers = [a.number for a in await applications(db)]
        await eventually(
            lambda: all_delivered(world, numbers, ("sms", "email", "card")),
            "a registration SMS, e-mail and staff card for every application",
            within=max(back - time.monotonic(), 0) + WITHIN,
        )
        caught_up = time.monotonic() - back
        await asyncio.sleep(3)  # anything sent twice would show now
        found = await applications(db)
        states = await drained(db, WITHIN)
        emptied = time.monotonic() - back
        readyz = await ready(service, 60)
        alive = service.process.poll() is None and service.process.pid == pid
        exit_code = await service.stop()
    finally:
        service.kill()
    got = deliveries(world, numbers)
    once = {channel: sum(1 for n in numbers if got[channel][n] == 1) for channel in got}
    twice = sum(1 for channel in got for n in numbers if got[channel][n] > 1)
    unfinished = sum(1 for s in subscribers if not s.done)
    while_down = sum(1 for a in found if down_at <= as_utc(a.created_at) < up_at)
    figure(
        f"outages/dependencies/{db.engine.dialect.name}: {scale} subscribers filed by polling while for "
        f"{OUTAGE:.0f} s the SMS gateway answered 503 ({world.sms.refused}x), SMTP 451 "
        f"({world.mail.refused}x), the Bot API 502 then 429 retry_after {RETRY_AFTER} "
        f"({world.telegram.refused[502]}x/{world.telegram.refused[429]}x); "
        f"{len(found)} applications ({while_down} registered while down), {doubled(found)} doubled, "
        f"{unfinished} subscribers unfinished "
        f"(all filed in {filed_in:.0f} s); registration SMS/e-mail/card exactly once: "
        f"{once['sms']}/{once['email']}/{once['card']} of {len(numbers)}, {twice} twice; "
        f"all delivered {caught_up:.0f} s after the outage, the outbox empty after {emptied:.0f} s "
        f"({dict(states)}); "
        f"same process: {alive}, /readyz {readyz}, tracebacks {tracebacks(service)}"
    )
    assert world.sms.refused and world.mail.refused and world.telegram.refused[502]
    assert world.telegram.refused[429] and while_down
    assert len(found) == len(numbers) == scale and doubled(found) == 0 and unfinished == 0
    assert once == {"sms": scale, "email": scale, "card": scale} and twice == 0
    assert set(states) <= {outbox.SENT, outbox.DELIVERED}, states
    assert alive and readyz == 200 and exit_code == 0
    assert tracebacks(service) == 0, service.log


class DatabaseProxy:
    """A TCP proxy on 127.0.0.1 in front of the database that can be cut: while it is cut its open
    connections are gone and new ones are refused, as when the server or the network is down."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.server: asyncio.AbstractServer | None = None
        self.transports: set[asyncio.WriteTransport] = set()
        self.connections = 0
        self.cut_connections = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        """Refuse new connections (nothing listens) and drop the open ones."""
        assert self.server is not None
        self.server.close()
        self.server = None
        self.cut_connections += len(self.transports)
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    async def stop(self) -> None:
        if self.server is not None:
            await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if self.server is None:  # cut while connecting
            writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self.connections += 1
        pair = {writer.transport, upstream_writer.transport}
        self.transports |= pair
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            self.transports -= pair

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


async def test_the_database_down_for_a_while_then_back(
    tmp_path: Path, world: World, backend: str, db: Database, db_url: str, scale: int
) -> None:
    if backend != "postgres":
        pytest.skip("the database is cut at a TCP proxy in front of PostgreSQL; SQLite is a local file")
    url = make_url(db_url)
    proxy = DatabaseProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = {
        "LOG_LEVEL": "WARNING",
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.az/tg",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    service = Isiqbot(tmp_path, world, through, **settings)
    count = max(6, scale // 4)
    crowd = people(count)
    await asyncio.to_thread(import_registry, service, registry_csv(crowd, tmp_path / "crowd.csv"))
    try:
        await service.start()
        assert service.process is not None
        pid = service.process.pid
        async with Webhooks([f"{service.base}/telegram/webhook"]) as hooks:
            subscribers = [Subscriber(world.telegram, person, hooks.deliver) for person in crowd]
            early, late = subscribers[: count // 2], subscribers[count // 2 :]
            world.sms.delay = 2.0  # the gateway takes an SMS at once and answers 2 s later
            filing = [asyncio.ensure_future(s.file()) for s in early]
            # Cut while the first registration SMS is on the wire (its answer comes while the database
            # is away) and the first half is on its way; the second half begins while it is down.
            await eventually(lambda: world.sms.received, "the first registration SMS", within=60)
            await proxy.cut()
            on_the_wire = len(world.sms.received)
            cut_at = time.monotonic()
            filing += [asyncio.ensure_future(s.file()) for s in late]
            await asyncio.sleep(OUTAGE - 3)
            health_down, _ = await service.get("/healthz")
            ready_down, _ = await service.get("/readyz")
            await asyncio.sleep(max(cut_at + OUTAGE - time.monotonic(), 0))
            refused_while_down = hooks.refused
            await proxy.start()
            back = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*filing), WITHIN)
            filed_after = time.monotonic() - back
            found = await applications(db)
            numbers = [a.number for a in found]
            await eventually(
                lambda: all_delivered(world, numbers, ("sms",)), "a registration SMS each", within=WITHIN
            )
            await asyncio.sleep(3)  # anything sent twice would show now
            refused = hooks.refused
        readyz = await ready(service, 60)
        alive = service.process.poll() is None and service.process.pid == pid
        exit_code = await service.stop()
    finally:
        service.kill()
        await proxy.stop()
    sms = deliveries(world, numbers)["sms"]
    per_person = Counter(a.user_key for a in found)
    lost = sum(1 for s in subscribers if s.sends and str(s.person.user_id) not in per_person)
    unfinished = sum(1 for s in subscribers if not s.done)
    figure(
        f"outages/database/postgresql: {count} subscribers filed by webhook while PostgreSQL was cut for "
        f"{OUTAGE:.0f} s ({proxy.cut_connections} connections dropped, new ones refused, {on_the_wire} "
        f"registration SMS on the wire): "
        f"{refused} updates answered 503 ({refused_while_down} while down), /healthz {health_down} and "
        f"/readyz {ready_down} while down; {len(found)} applications ({filed_after:.0f} s after it came "
        f"back), {lost} lost, {doubled(found)} doubled, {unfinished} unfinished; registration SMS exactly "
        f"once: {sum(1 for n in numbers if sms[n] == 1)} of {len(numbers)}; same process: {alive}, "
        f"/readyz {readyz} at the end, tracebacks {tracebacks(service)}"
    )
    assert refused_while_down > 0 and health_down == ready_down == 503
    assert len(found) == count and lost == 0 and doubled(found) == 0 and unfinished == 0
    assert all(sms[n] == 1 for n in numbers)
    assert alive and readyz == 200 and exit_code == 0
    assert tracebacks(service) == 0, service.log


class AwayDatabase(Database):
    """A database that can be away: every transaction is then refused, as a closed port refuses."""

    away = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        if self.away:
            raise ConnectionRefusedError(111, "Connect call failed")
        async with super().transaction() as session:
            yield session


async def test_a_send_whose_outcome_waits_for_the_database_is_not_sent_again(
    db_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away while an SMS is on the wire: the worker keeps the outcome until it can
    write it, instead of leaving the row `sending` to be taken (and sent) again after its lease."""
    monkeypatch.setattr(worker, "RECORD_AGAIN", 0.05)
    db = AwayDatabase(db_url)
    await upgrade(db.engine)
    async with db.transaction() as session:
        outbox.enqueue(
            session, channel=outbox.SMS, user_key="+994501234567", kind="sms", payload={}, now=clock()
        )
    handed_over: list[int] = []

    class Gateway:
        async def deliver(self, notification: Notification) -> str | None:
            handed_over.append(notification.id or 0)
            db.away = True  # taken by the gateway; its answer comes while the database is away
            asyncio.get_running_loop().call_later(0.5, setattr, db, "away", False)
            return "sms-1"

    box = OutboxWorker(db, {outbox.SMS: Gateway()}, clock=clock)
    stop = asyncio.Event()
    running = asyncio.create_task(box.run(stop))
    try:
        await eventually(lambda: handed_over, "the SMS handed over")
        await asyncio.sleep(1.0)  # the database is back after 0.5 s
        clock.advance(seconds=LEASE.total_seconds() + 1)
        box.wake()
        await asyncio.sleep(1.5)  # a row left `sending` would be taken, and sent, again now
        stop.set()
        box.wake()
        await asyncio.wait_for(running, 10)
        async with db.transaction() as session:
            [row] = (await session.scalars(select(Notification))).all()
    finally:
        stop.set()
        await db.dispose()
    assert len(handed_over) == 1
    assert (row.state, row.provider_id, row.attempts) == (outbox.SENT, "sms-1", 1)
