"""Chaos: a crowd files while `isiqbot run` is SIGKILLed three times; nothing lost, nothing twice.

Telegram re-delivers what was not acknowledged: by polling, the offset not confirmed; by webhook,
every update is posted again until a process answers 200. Figures: applications against the
people who pressed "Send", applications doubled or lost, and the registration SMS, e-mail and staff
card of each application (exactly one each).

A kill between a send and the record of it leaves the row to be sent again once its lease is over.
The SMS goes again under the same `Idempotency-Key`, which the gateway answers without sending, and
the e-mail under the same Message-ID, one message in the recipient's mailbox: both are counted as the
phone and the mailbox show them, exactly once. What reached the gateway or the SMTP server twice, and
a card shown twice (the Bot API has no such key), is allowed only where its row was taken again
after a kill (attempts > 1), never otherwise.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from storage.db import Database
from storage.models import Application, Notification
from tests.chaos.conftest import figure
from tests.chaos.crowd import SECRET, Subscriber, Webhooks, people, registry_csv
from tests.processes import run_isiqbot
from tests.running import Isiqbot, World, eventually

DEPARTMENT_CHATS = (-1001000000001, -1001000000002, -1001000000003, -1001000000004)
KILLS = 3


async def applications(db: Database) -> list[Application]:
    async with db.transaction() as session:
        return list((await session.scalars(select(Application))).all())


async def notifications(db: Database) -> list[Notification]:
    async with db.transaction() as session:
        return list((await session.scalars(select(Notification))).all())


def import_registry(service: Isiqbot, path: Path) -> None:
    result = run_isiqbot(service.tmp_path, "registry", "import", str(path), env=service.env)
    assert result.returncode == 0, result.stderr


async def killer(services: list[Isiqbot], crowd_done: asyncio.Event, kills: int) -> int:
    """SIGKILL a process at random moments while the crowd files, and start it again at once."""
    killed = 0
    while killed < kills and not crowd_done.is_set():
        await asyncio.sleep(random.uniform(0.5, 2.0))
        if crowd_done.is_set():
            break
        victim = random.choice(services)
        victim.kill()
        killed += 1
        await victim.start()
    return killed


async def storm(world: World, db: Database, services: list[Isiqbot], count: int, mode: str) -> dict[str, int]:
    crowd = people(count)
    for service in services:
        await service.start()
    async with Webhooks([f"{s.base}/telegram/webhook" for s in services]) as hooks:
        deliver = hooks.deliver if mode == "webhook" else None
        subscribers = [Subscriber(world.telegram, person, deliver) for person in crowd]
        done = asyncio.Event()
        kills = asyncio.create_task(killer(services, done, KILLS))
        started = time.monotonic()
        await asyncio.gather(*(s.file() for s in subscribers))
        done.set()
        killed = await kills
        filing = time.monotonic() - started
        # Whatever a kill left claimed is taken again once its lease is over: wait for every message.
        filed = len(await applications(db))

        def cards() -> list[dict[str, object]]:
            return [
                m
                for chat in DEPARTMENT_CHATS
                for m in world.telegram.sent_to(chat)
                if "inline_keyboard" in str(m)
            ]

        await eventually(lambda: len(world.sms.received) >= filed, "a registration SMS each", within=120)
        await eventually(lambda: len(world.mail.messages) >= filed, "a registration e-mail each", within=120)
        await eventually(lambda: len(cards()) >= filed, "a staff card each", within=120)
        await asyncio.sleep(2)  # anything sent twice would show now
    filed_rows = await applications(db)
    numbers = Counter(a.number for a in filed_rows)
    per_person = Counter((a.user_key) for a in filed_rows)
    sms = Counter(n for n in numbers for m in world.sms.received if n in m["text"])
    mail = Counter(n for n in numbers for m in world.mail.distinct() if n in str(m["Subject"]))
    card = Counter(n for n in numbers for m in cards() if n in str(m.get("text") or m.get("caption")))
    rows = await notifications(db)
    ids = {a.number: a.id for a in filed_rows}
    posted = Counter(n for n in numbers for m in world.sms.posted if n in m["text"])
    mailed = Counter(n for n in numbers for m in world.mail.messages if n in str(m["Subject"]))

    def taken_again(kind: str) -> set[int | None]:
        return {r.application_id for r in rows if r.kind == kind and r.attempts > 1}

    def again_unexplained(count: Counter[str], kind: str) -> set[str]:
        """Sent more than once where no kill fell between a send and its record."""
        return {n for n in numbers if count[n] > 1 and ids[n] not in taken_again(kind)}

    cards_again = [n for n in numbers if card[n] > 1]
    result = {
        "subscribers": count,
        "pressed_send": sum(1 for s in subscribers if s.sends),
        "send_presses": sum(s.sends for s in subscribers),
        "applications": len(numbers),
        "doubled": sum(1 for n in per_person.values() if n > 1),
        "lost": sum(1 for s in subscribers if s.sends and str(s.person.user_id) not in per_person),
        "unfinished": sum(1 for s in subscribers if not s.done),
        "sms_not_1": len({n for n in numbers if sms[n] != 1} | again_unexplained(posted, "sms_registered")),
        "email_not_1": len(
            {n for n in numbers if mail[n] != 1} | again_unexplained(mailed, "email_registered")
        ),
        "card_not_1": len({n for n in numbers if card[n] == 0} | again_unexplained(card, "card")),
        "kills": killed,
        "seconds": round(filing),
    }
    figure(
        f"kills/{mode}/{db.engine.dialect.name}/{len(services)} process(es): {count} subscribers, "
        f"{killed} SIGKILLs, "
        f"{result['send_presses']} Send presses by {result['pressed_send']} people -> "
        f"{result['applications']} applications, {result['doubled']} doubled, {result['lost']} lost; "
        f"registration SMS/e-mail/card not exactly once: {result['sms_not_1']}/{result['email_not_1']}/"
        f"{result['card_not_1']}; {result['seconds']} s"
        + "".join(f"; card of {n}: {card[n]}" for n in numbers if card[n] != 1)
    )
    figure(
        f"  sent again after a kill: {world.sms.replayed} SMS (answered by their key, not sent), "
        f"{len(world.mail.messages) - len(world.mail.distinct())} e-mails (same Message-ID), "
        f"{len(cards_again)} cards (the Bot API has no key)"
    )
    twice = [n for n in numbers if sms[n] > 1]
    if twice:  # how the repeated ones went: attempts on the rows
        attempts = sorted(r.attempts for r in rows if r.kind == "sms_registered")
        figure(f"  SMS more than once: {len(twice)}; attempts of the registration SMS rows: {attempts}")
    stuck = next((s for s in subscribers if not s.done), None)
    if stuck is not None:  # what a person who did not get through last saw
        figure(f"  stuck after {stuck.steps} actions, last seen: {stuck.texts()[-3:]!r}"[:2000])
    return result


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_crowd_files_through_three_kills(
    tmp_path: Path, world: World, db: Database, db_url: str, mode: str, scale: int
) -> None:
    settings = {"LOG_LEVEL": "WARNING"}
    if mode == "webhook":
        settings |= {"TELEGRAM_WEBHOOK_URL": "https://bot.example.az/tg", "TELEGRAM_WEBHOOK_SECRET": SECRET}
    service = Isiqbot(tmp_path, world, db_url, **settings)
    await asyncio.to_thread(import_registry, service, registry_csv(people(scale), tmp_path / "crowd.csv"))
    try:
        result = await storm(world, db, [service], scale, mode)
    finally:
        service.kill()
    assert result["kills"] == KILLS
    assert result["applications"] == result["subscribers"] == result["pressed_send"]
    assert (result["doubled"], result["lost"], result["unfinished"]) == (0, 0, 0)
    assert (result["sms_not_1"], result["email_not_1"], result["card_not_1"]) == (0, 0, 0)


async def test_two_processes_on_one_postgresql_one_of_them_killed(
    tmp_path: Path, world: World, db: Database, db_url: str, backend: str, scale: int
) -> None:
    if backend != "postgres":
        pytest.skip("several processes share one database on PostgreSQL only")
    settings = {
        "LOG_LEVEL": "WARNING",
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.az/tg",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    first = Isiqbot(tmp_path, world, db_url, **settings)
    second = Isiqbot(tmp_path, world, db_url, **settings)
    await asyncio.to_thread(import_registry, first, registry_csv(people(scale), tmp_path / "crowd.csv"))
    try:
        result = await storm(world, db, [first, second], scale, "webhook")
    finally:
        first.kill()
        second.kill()
    assert result["kills"] >= 1
    assert result["applications"] == result["subscribers"] == result["pressed_send"]
    assert (result["doubled"], result["lost"], result["unfinished"]) == (0, 0, 0)
    assert (result["sms_not_1"], result["email_not_1"], result["card_not_1"]) == (0, 0, 0)
