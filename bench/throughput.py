"""How many subscriber updates per second the service handles: an outage storm of many subscribers.

Each simulated subscriber files a whole residential application (10 updates; 11 when the phone has
several accounts, and so the account is asked) through the same `Conversations` service the channels
use, all subscribers at once. Then the outbox worker sends what the storm queued (each registration's
SMS, through the log sink, so the measure is our own cost: claiming, rendering, recording). Run:

    .venv/bin/python bench/throughput.py --subscribers 500 [--database postgresql+asyncpg://…]

It prints updates/s, the latency percentiles of one update and the outbox's messages/s. Nothing here
is asserted: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bot.core.links import LinkSigner, PublicLinks
from bot.core.service import Conversations
from bot.notify.outbox import OutboxWorker
from bot.notify.sms import GatewaySms, LogSmsGateway, SmsSender
from dialogs.events import Command, Contact, Event, Pressed, Text
from dialogs.ports import Subscriber
from storage import outbox, registry
from storage.db import Database
from storage.migrate import upgrade

PHONES = ["+994996510079", "+994993491065", "+994998406430"]


async def one_subscriber(service: Conversations, index: int, latencies: list[float]) -> int:
    subscriber = Subscriber("bench", f"user-{index}")
    rev = 0
    updates = 0

    async def send(event: Event) -> list[str]:
        nonlocal rev, updates
        started = time.perf_counter()
        handled = await service.handle(subscriber, event, update_id=f"{index}-{updates}")
        latencies.append(time.perf_counter() - started)
        updates += 1
        assert handled is not None
        rev = handled.outcome.rev
        return [c.id for c in handled.outcome.messages[-1].choices]

    await send(Command("start"))
    await send(Pressed("new", rev))
    choices = await send(Contact(PHONES[index % len(PHONES)], own=True))
    accounts = [c for c in choices if c.startswith("acc:")]
    if accounts:  # several accounts: the first; one is taken without a question
        await send(Pressed(accounts[0], rev))
    await send(Pressed("reason:no_power", rev))
    await send(Text("Səhərdən bəri mənzildə işıq yoxdur, qonşularda var."))
    await send(Pressed("done", rev))
    choices = await send(Pressed("ok", rev))
    assert "send" in choices, f"user-{index} did not reach the review: {choices}"  # the walk, not a measure
    await send(Pressed("send", rev))
    await send(Command("my"))
    await send(Command("start"))
    return updates


async def main(subscribers: int, url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await upgrade(db.engine)
        async with db.transaction() as session:
            if await registry.is_empty(session):
                await registry.import_csv(session, registry.SAMPLE_CSV.read_bytes())
        gateway = LogSmsGateway()
        service = Conversations(db, GatewaySms(gateway))
        latencies: list[float] = []
        started = time.perf_counter()
        counts = await asyncio.gather(*(one_subscriber(service, i, latencies) for i in range(subscribers)))
        elapsed = time.perf_counter() - started
        links = PublicLinks(LinkSigner.ephemeral(), "https://bot.azerisiq.az")
        worker = OutboxWorker(db, {outbox.SMS: SmsSender(gateway, links)}, batch=200)
        sent_started = time.perf_counter()
        sent = 0
        while claimed := await worker.run_once():
            sent += claimed
        sent_elapsed = time.perf_counter() - sent_started
        await db.dispose()
    total = sum(counts)
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"backend      {db.engine.dialect.name}")
    print(f"subscribers  {subscribers} at once, {total} updates, {subscribers} applications")
    print(f"throughput   {total / elapsed:.0f} updates/s ({elapsed:.1f} s)")
    p50, p95, worst = (1000 * x for x in (quantiles[49], quantiles[94], max(latencies)))
    print(f"latency      p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms")
    print(f"outbox       {sent} SMS in {sent_elapsed:.1f} s, {sent / sent_elapsed:.0f} messages/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--database", help="DATABASE_URL to measure (default: a temporary SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.subscribers, args.database))
