"""The outbox worker: sends what the outbox holds, retries with backoff, gives up with a reason.

Each channel has a `Sender`. A sender raises `Temporary` for what may work later (a timeout, a 5xx,
a 429 with its `retry_after`) and `Permanent` for what never will (the chat blocked the bot). The
worker runs inside `isiqbot run`; `run_once` is one round, for tests and for draining at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import metrics
from bot.core.clock import Clock, system_clock
from bot.core.context import log_context
from bot.core.departments import Departments
from dialogs import attachments, notices
from locales import Msg, payload_msg, translate
from storage import broadcasts, outages, outbox, staff
from storage.db import Database, as_utc, storage_unavailable
from storage.models import Notification

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=20)  # a claim not renewed for this long is taken again (its worker died)
RENEW_EVERY = 5.0  # seconds: how often a running worker renews the leases of its sends
GIVE_UP_AFTER = timedelta(hours=24)
FIRST_RETRY = 5.0  # seconds; doubled at each attempt
MAX_RETRY = 900.0
IDLE_WAIT = 1.0
PERIOD = 60.0  # how often the periodic jobs (deadline reminders) run
UNEXPECTED_TRIES = 3  # an error we did not foresee fails the message after this many attempts
RECORD_AGAIN = 1.0  # seconds: how often the outcome of a send is written again while the database is away


class Temporary(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Permanent(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def staff_file(notification: Notification) -> dict[str, Any] | None:
    """The photo, voice note or document a department sent with its message (`dialogs.attachments`'
    shape; the photo of a message queued before files had their own field too); None for text alone."""
    if notification.kind != "staff_message":
        return None
    file = notification.payload.get("file")
    if isinstance(file, dict) and file.get("kind") in attachments.KINDS and file.get("ref"):
        return dict(file)
    photo = notification.payload.get("photo")
    return attachments.photo_item(str(photo)) if photo else None


def delivery_key(notification: Notification) -> str:
    """The same for every attempt at one message, and for no other message: the `Idempotency-Key` of
    its SMS and the `Message-ID` of its e-mail. A worker killed after a send and before recording it
    leaves the row to be sent again; with this key the gateway or the mailbox can tell the second copy
    from a new message. The creation time keeps ids reused by a restored database from matching."""
    assert notification.id is not None
    return f"isiqbot-{notification.id}-{as_utc(notification.created_at):%Y%m%d%H%M%S%f}"


class Sender(Protocol):
    async def deliver(self, notification: Notification) -> str | None:
        """Send it; the provider's message id, if any. Raises Temporary or Permanent."""
        ...


def chat_text(
    notification: Notification, departments: Departments, reopen_within: timedelta = timedelta(0)
) -> str:
    """What a chat message to a subscriber says: a status change, or a department's message, signed.

    The news of work completed asks for a rating and, when REOPEN_DAYS allows it, says how long the
    application may be reopened (both in "My applications")."""
    lang, payload = notification.lang, notification.payload
    hint = translate(Msg("notify.reply_hint"), lang)
    if notification.kind == "status":
        if payload.get("key") == notices.RATE_NEWS:
            hints = [Msg("notify.rate_hint")]
            if reopen_within > timedelta(0):
                days = f"{reopen_within.total_seconds() / 86400:g}"
                hints.append(Msg("notify.reopen_hint", {"days": days}))
            return "\n\n".join(translate(m, lang) for m in (payload_msg(payload), *hints))
        if payload.get("key") in notices.RESULT_NEWS_KEYS:  # closed: it takes no more messages
            return translate(payload_msg(payload), lang)
        return translate(payload_msg(payload), lang) + "\n\n" + hint
    if notification.kind == notices.VISIT:  # visit times proposed, or tomorrow's visit
        return translate(payload_msg(payload), lang) + "\n\n" + hint
    if notification.kind == outages.NEWS:  # about an outage, not an application: nothing to reply to
        return translate(payload_msg(payload), lang)
    if notification.kind == broadcasts.NEWS:  # staff's words, under a line saying whose they are
        return translate(Msg("broadcast.news", {"text": str(payload.get("text") or "")}), lang)
    if (
        notification.kind == notices.TRANSFERRED
    ):  # another department has it now: named in the person's language
        department = departments.by_key(str(payload.get("department", "")))
        name = department.name(lang) if department else translate(Msg("notify.department"), lang)
        moved = translate(Msg("notify.transferred", {"number": payload["number"], "department": name}), lang)
        return moved + "\n\n" + hint
    if notification.kind == "staff_message":
        department = departments.by_key(str(payload.get("department", "")))
        name = department.name(lang) if department else translate(Msg("notify.department"), lang)
        head = translate(Msg("notify.staff_message", {"department": name, "number": payload["number"]}), lang)
        return "\n\n".join(part for part in (head, str(payload.get("text") or ""), hint) if part)
    raise Permanent(f"unknown notification kind {notification.kind!r}")


def backoff(attempts: int, retry_after: float | None = None) -> float:
    delay = min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)
    return max(delay, retry_after or 0.0)


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        senders: Mapping[str, Sender],
        clock: Clock = system_clock,
        periodic: Sequence[Callable[[datetime], Awaitable[object]]] = (),
        batch: int = 50,
        wakeup: asyncio.Event | None = None,
        period: float = PERIOD,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.clock = clock
        self.periodic = list(periodic)
        self.batch = batch
        self.period = period
        # Set by whoever queues a message (the service, the staff chat), built before this worker.
        self._wake = wakeup or asyncio.Event()
        self._in_flight: set[int] = set()  # ids being sent now: their leases are renewed

    def wake(self) -> None:
        """Something was queued: look now rather than at the next tick."""
        self._wake.set()

    async def run_once(self) -> int:
        """Send one round: the next due message of each recipient. Returns how many were tried."""
        now = self.clock()
        async with self.db.transaction() as session:
            claimed = await outbox.claim(session, self.senders.keys(), now, LEASE, self.batch)
            for row in claimed:
                session.expunge(row)
        ids = {row.id for row in claimed if row.id is not None}
        self._in_flight |= ids
        try:
            await asyncio.gather(*(self._sending(row) for row in claimed))
        finally:
            self._in_flight -= ids
        return len(claimed)

    async def renew_leases(self, stop: asyncio.Event) -> None:
        """While sends take long (a slow gateway, Telegram's pacing), keep them ours."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), RENEW_EVERY)
            except TimeoutError:
                pass
            if self._in_flight:
                try:
                    async with self.db.transaction() as session:
                        await outbox.renew(session, set(self._in_flight), self.clock())
                except Exception as exc:
                    _failed("the outbox's leases could not be renewed; trying again", exc)

    async def drain(self, rounds: int = 50) -> None:
        """Rounds until nothing is due (tests; shutdown)."""
        for _ in range(rounds):
            if not await self.run_once():
                return

    async def tick(self) -> None:
        """The periodic jobs, each on its own: one failing does not stop the others."""
        for job in self.periodic:
            try:
                await job(self.clock())
            except Exception as exc:
                _failed("a periodic job failed; it runs again at the next tick", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: a round whenever something is due, the periodic jobs every `period`.

        A round that has begun is finished before the loop looks at `stop` again, so at a clean stop
        every claimed message is sent and recorded, and none waits for its lease to be sent twice.
        """
        renewing = asyncio.create_task(self.renew_leases(stop))
        try:
            await self._loop(stop)
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not stop.is_set():
            if loop.time() >= next_tick:
                await self.tick()
                next_tick = loop.time() + self.period
            try:
                sent = await self.run_once()
            except Exception as exc:
                _failed("the outbox could not be read; trying again", exc)
                sent = 0
            if sent:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), min(IDLE_WAIT, max(next_tick - loop.time(), 0)))
            except TimeoutError:
                pass

    async def _sending(self, row: Notification) -> None:
        """`_send`, its lines carrying the message's channel and application number (a sender that
        reads the application binds the number when the payload has none: `bot.core.context`)."""
        with log_context(channel=row.channel, application=_number(row.payload)):
            await self._send(row)

    async def _send(self, row: Notification) -> None:
        assert row.id is not None
        sender = self.senders[row.channel]
        try:
            provider_id = await sender.deliver(row)
        except Permanent as exc:
            await self._record(row, failed=exc.reason)
        except Temporary as exc:
            await self._record(row, retry=exc.reason, retry_after=exc.retry_after)
        except Exception as exc:
            if storage_unavailable(exc):  # the sender reads or writes the database, and it is away
                log.warning("notification %s waits for the database (%s)", row.id, type(exc).__name__)
                await self._record(row, retry=f"database unavailable: {type(exc).__name__}")
                return
            # A bug of ours: visible in the log and on the row, tried a few times.
            log.exception("sending notification %s failed", row.id)
            reason = f"{type(exc).__name__}: {exc}"[:200]
            if row.attempts >= UNEXPECTED_TRIES:  # not worth a day of retries holding back its lane
                await self._record(row, failed=f"gave up after {row.attempts} attempts: {reason}")
            else:
                await self._record(row, retry=reason)
        else:
            now = self.clock()
            notification_id = row.id

            async def sent(session: AsyncSession) -> None:
                await outbox.mark_sent(session, notification_id, provider_id, now)

            await self._write(row, sent)
            metrics.sent(row.channel, (now - as_utc(row.created_at)).total_seconds())

    async def _write(self, row: Notification, write: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Record what a send did, again and again while the database is away.

        Given up, the row would stay `sending` and be sent a second time once its lease is over. Until
        it is written the row stays in flight, so its lease is renewed as soon as the database is back.
        """
        while True:
            try:
                async with self.db.transaction() as session:
                    await write(session)
                return
            except Exception as exc:
                if not storage_unavailable(exc):
                    raise
                log.warning(
                    "the outcome of notification %s waits for the database (%s)", row.id, type(exc).__name__
                )
            await asyncio.sleep(RECORD_AGAIN)

    async def _record(
        self,
        row: Notification,
        *,
        failed: str | None = None,
        retry: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        assert row.id is not None
        notification_id = row.id
        now = self.clock()

        async def record(session: AsyncSession) -> None:
            if failed is not None:  # the reason may quote an address or a number: it stays on the row
                log.info("notification %s (%s to %s) failed for good", row.id, row.kind, row.channel)
                await outbox.mark_failed(session, notification_id, failed, now)
                if await outbox.fallback_to_sms(session, notification_id, now) is not None:
                    log.info("notification %s goes by SMS instead", row.id)
                await _show_on_card(session, row, now)
                return
            reason = retry or "temporary failure"
            if now - as_utc(row.created_at) > GIVE_UP_AFTER:
                log.warning("notification %s (%s) given up after %s attempts", row.id, row.kind, row.attempts)
                await outbox.mark_failed(
                    session, notification_id, f"gave up after {row.attempts} attempts: {reason}", now
                )
                await outbox.fallback_to_sms(session, notification_id, now)
                await _show_on_card(session, row, now)
                return
            delay = backoff(row.attempts, retry_after)
            await outbox.retry_later(session, notification_id, reason, now + timedelta(seconds=delay))

        await self._write(row, record)
        metrics.not_sent(
            row.channel, given_up=failed is not None or now - as_utc(row.created_at) > GIVE_UP_AFTER
        )


def _number(payload: Mapping[str, object]) -> str | None:
    """The application number a message's payload names (a department's message, a status, an SMS)."""
    params = payload.get("params")
    found = payload.get("number") or (params.get("number") if isinstance(params, Mapping) else None)
    return found if isinstance(found, str) else None


def _failed(what: str, exc: Exception) -> None:
    """While the database is away a failure is expected: one line; anything else with its traceback."""
    if storage_unavailable(exc):
        log.warning("%s (the database is away: %s)", what, type(exc).__name__)
    else:
        log.exception(what)


async def _show_on_card(session: AsyncSession, row: Notification, now: datetime) -> None:
    """A message the subscriber will not get is shown on the staff card: they may need to phone."""
    if row.channel != outbox.STAFF and row.application_id is not None:
        await staff.to_thread(session, row.application_id, "card_refresh", {}, now)
