"""The service every channel shares: one transaction per update, in order per conversation.

A channel calls `Conversations.handle(subscriber, event, update_id)`; it gets back what to show.
The update id is recorded, the conversation row locked, the dialog run and the new state written in
one transaction, so a re-delivered update does nothing and a crash leaves the previous step or the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import metrics
from bot.core.clock import Clock, system_clock
from bot.core.context import bind, log_context
from bot.core.links import LinkSigner
from bot.core.policy import StaffPolicy
from dialogs import lifecycle, notices, ports
from dialogs import visits as dialogs_visits
from dialogs.errors import DialogError
from dialogs.events import Event
from dialogs.machine import Dialog
from dialogs.replies import Message, Outcome
from dialogs.state import State
from dialogs.validate import mask_phone
from locales import Msg, normalize_language
from storage import applications, codes, conversations, outages, outbox, registry, staff, visits
from storage.db import Database, as_utc, storage_unavailable
from storage.models import Application

log = logging.getLogger(__name__)


class PendingSms:
    """The SMS an update asks for, held until its transaction is committed.

    A rolled-back update then sends nothing, and a code that was sent is always the one stored.
    """

    def __init__(self) -> None:
        self.queued: list[tuple[str, Msg, str]] = []

    async def send(self, phone: str, text: Msg, lang: str) -> None:
        self.queued.append((phone, text, lang))


class CodeLogAdapter:
    """The dialog's `CodeLog` port over the otp_request table."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sent_to(self, phone: str, since: datetime) -> Sequence[datetime]:
        return [as_utc(t) for t in await codes.sent_to(self.session, phone, since)]

    async def count_by(self, subscriber: ports.Subscriber, since: datetime) -> int:
        return await codes.count_by(self.session, _requester(subscriber), since)

    async def record(self, phone: str, subscriber: ports.Subscriber, at: datetime) -> None:
        codes.record(self.session, phone, _requester(subscriber), at)
        metrics.CODES.labels("sent").inc()

    def refused(self) -> None:
        metrics.CODES.labels("refused").inc()


def _count(update_id: str | None, channel: str, outcome: str, started: float) -> None:
    """A platform's update counted for /metrics; the question asked again after it is not another."""
    if update_id is not None:
        metrics.handled(channel, outcome, time.perf_counter() - started)


def _requester(subscriber: ports.Subscriber) -> str:
    return f"{subscriber.channel}:{subscriber.user_key}"


class OutagesAdapter:
    """The dialog's `Outages` port over the outage tables, inside the update's transaction."""

    def __init__(self, session: AsyncSession, subscriber: ports.Subscriber, now: datetime) -> None:
        self.session = session
        self.subscriber = subscriber
        self.now = now

    async def affecting(self, account_id: int, point_id: int | None) -> ports.OutageView | None:
        found = await outages.affecting(self.session, account_id, point_id, self.now)
        return ports.OutageView(found.id, as_utc(found.until)) if found is not None and found.id else None

    async def watch(self, outage_id: int, lang: str) -> None:
        channel, user_key = self.subscriber.channel, self.subscriber.user_key
        await outages.watch(self.session, outage_id, channel, user_key, lang, self.now)


class RegistryAdapter:
    """The dialog's `Registry` port over the registry tables, inside the update's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def holders_by_phone(self, phone: str) -> Sequence[ports.Holder]:
        people = await registry.persons_by_phone(self.session, phone)
        return [ports.Holder(full_name=p.full_name, fin=p.fin) for p in people]

    async def accounts_by_phone(self, phone: str) -> Sequence[ports.AccountView]:
        rows = await registry.accounts_by_phone(self.session, phone)
        return [
            ports.AccountView(
                id=a.id or 0,
                code=a.code,
                kind=a.kind,
                address=a.address,
                region=a.region,
                company=a.company,
                voen=a.voen,
            )
            for a in rows
        ]

    async def phone_for_code(self, code: str) -> str | None:
        return await registry.phone_for_code(self.session, code)

    async def metering_points(self, account_id: int) -> Sequence[ports.MeteringPointView]:
        rows = await registry.metering_points(self.session, account_id)
        return [
            ports.MeteringPointView(id=p.id or 0, code=p.code, address=p.address, region=p.region)
            for p in rows
        ]


def application_view(
    app: Application,
    history: Sequence[Any] = (),
    done_within: timedelta | None = None,
    stars: int | None = None,
    reopen_within: timedelta | None = None,
    visit: ports.VisitView | None = None,
) -> ports.ApplicationView:
    entries = tuple(ports.StatusEntry(c.new_status, as_utc(c.created_at), c.note) for c in history)
    completions = [entry.at for entry in entries if entry.status == lifecycle.Status.COMPLETED]
    reopen_until = None
    if reopen_within is not None and completions and lifecycle.reopenable(app.status):
        reopen_until = max(completions) + reopen_within
    return ports.ApplicationView(
        id=app.id or 0,
        number=app.number,
        kind=app.kind,
        account_code=app.account_code,
        metering_point_code=app.metering_point_code,
        reason=app.reason,
        status=app.status,
        created_at=as_utc(app.created_at),
        result=app.result,
        history=entries,
        due_at=staff.due_at(app, done_within) if done_within is not None else None,
        stars=stars,
        reopen_until=reopen_until,
        visit=visit if lifecycle.is_open(app.status) else None,
    )


RELAY_LIMIT = 10  # messages from a subscriber to one application's thread …
RELAY_WINDOW = timedelta(minutes=10)  # … within this time


class ApplicationsAdapter:
    """The dialog's `Applications` port, inside the update's transaction."""

    def __init__(self, session: AsyncSession, now: datetime, policy: StaffPolicy) -> None:
        self.session = session
        self.now = now
        self.policy = policy

    async def reserve_number(self) -> str:
        return await applications.reserve_number(self.session, self.now)

    async def register(self, draft: ports.ApplicationDraft) -> ports.Registered:
        app, created = await applications.register(self.session, draft, self.now)
        bind(application=app.number)  # on this update's log lines from here on
        if created:
            department = self.policy.departments.for_region(app.region)
            if department is not None:
                staff.route(self.session, app, department.key, department.chat_id, self.now)
            else:  # nowhere to show it: no department serves the region and STAFF_CHAT_ID is unset
                log.warning("application %s has no staff chat (region %s)", app.number, app.region)
            log.info("application %s registered (%s, %s)", app.number, app.channel, app.kind)
        return ports.Registered(number=app.number, created=created)

    async def list_mine(
        self, subscriber: ports.Subscriber, phones: Sequence[str]
    ) -> Sequence[ports.ApplicationView]:
        rows = await applications.list_for_subscriber(
            self.session, subscriber.channel, subscriber.user_key, phones
        )
        return [application_view(a, done_within=self.policy.done_within) for a in rows]

    async def get_mine(
        self, subscriber: ports.Subscriber, phones: Sequence[str], application_id: int
    ) -> ports.ApplicationView | None:
        app = await self.session.get(Application, application_id)
        if app is None:
            return None
        own_chat = (app.channel, app.user_key) == (subscriber.channel, subscriber.user_key)
        if not own_chat and app.applicant_phone not in phones:
            return None
        bind(application=app.number)
        history = (await applications.histories(self.session, [application_id]))[application_id]
        rated = await applications.rating(self.session, application_id)
        stars = rated.stars if rated is not None else None
        visit = visits.view(await visits.get(self.session, application_id))
        return application_view(
            app, history, self.policy.done_within, stars, self.policy.reopen_within, visit
        )

    async def choose_visit(self, application_id: int, proposal: int, index: int | None) -> ports.VisitChoice:
        app = await staff.get_for_update(self.session, application_id)
        if app is None:
            return ports.VisitChoice("closed")
        done, _ = await visits.choose(self.session, app, proposal, index, self.now)
        if done.outcome in ("ok", "declined"):
            window = dialogs_visits.shown(done.window) if done.window is not None else None
            await applications.tell(self.session, app, notices.visit_chosen(app.number, window), self.now)
            log.info("application %s: visit %s", app.number, done.outcome)
        return done

    async def open_on(self, account_id: int, point_id: int | None) -> ports.ApplicationView | None:
        app = await applications.open_on(self.session, account_id, point_id)
        return application_view(app) if app is not None else None

    async def follow(self, subscriber: ports.Subscriber, application_id: int, lang: str) -> None:
        channel, user_key = subscriber.channel, subscriber.user_key
        await applications.follow(self.session, application_id, channel, user_key, lang, self.now)

    async def reopen(self, application_id: int, reason: str, actor: str) -> None:
        try:
            await applications.reopen(
                self.session,
                application_id,
                reason,
                actor=actor,
                within=self.policy.reopen_within,
                now=self.now,
            )
        except lifecycle.IllegalTransition as exc:
            raise DialogError(Msg(exc.key, dict(exc.params))) from exc

    async def rate(
        self, subscriber: ports.Subscriber, application_id: int, stars: int, comment: str | None
    ) -> bool:
        try:
            return await applications.rate(
                self.session,
                application_id,
                stars,
                comment,
                channel=subscriber.channel,
                user_key=subscriber.user_key,
                now=self.now,
            )
        except lifecycle.IllegalTransition as exc:
            raise DialogError(Msg(exc.key, dict(exc.params))) from exc

    async def replied_to(self, subscriber: ports.Subscriber, message_ref: str) -> int | None:
        found = await staff.linked(self.session, subscriber.channel, subscriber.user_key, message_ref)
        return found.application_id if found is not None and found.kind == "to_subscriber" else None

    async def message_staff(
        self, application_id: int, text: str, photo_ref: str | None, attachment: dict[str, Any] | None = None
    ) -> bool:
        recent = await staff.relays_since(self.session, application_id, self.now - RELAY_WINDOW)
        if recent >= RELAY_LIMIT:  # a department chat has 20 messages a minute for everyone: share them
            raise DialogError(Msg("app.message_wait", {"minutes": int(RELAY_WINDOW.total_seconds() // 60)}))
        payload: dict[str, Any] = {"key": "staff.from_subscriber", "text": text, "photo": photo_ref}
        if attachment is not None:  # a voice note or a document, sent after the text
            payload["attachment"] = attachment
        return await staff.to_thread(self.session, application_id, "relay", payload, self.now)

    async def cancel(self, application_id: int, actor: str) -> None:
        try:
            await applications.change_status(
                self.session,
                application_id,
                lifecycle.Status.CANCELLED,
                actor=actor,
                role=lifecycle.Role.SUBSCRIBER,
                note=None,
                now=self.now,
            )
        except lifecycle.IllegalTransition as exc:
            raise DialogError(Msg("app.cancel_too_late")) from exc


@dataclass(frozen=True, slots=True)
class Handled:
    """What a channel shows after an update, and the language to show it in."""

    outcome: Outcome
    lang: str


class Conversations:
    """Runs the dialog for every channel; one instance per process."""

    def __init__(
        self,
        db: Database,
        sms: ports.Sms,
        clock: Clock = system_clock,
        dialog: Dialog | None = None,
        links: LinkSigner | None = None,
        policy: StaffPolicy | None = None,
        on_commit: Callable[[], None] | None = None,
    ):
        self.db = db
        self.sms = sms
        self.links = links or LinkSigner.ephemeral()
        self.policy = policy or StaffPolicy()
        self.on_commit = on_commit  # wakes the outbox worker after an update that queued a message
        self.clock = clock
        self.dialog = dialog or Dialog()
        # One lock per conversation, held while its update is handled: updates of one chat in order,
        # different chats concurrently. Across processes the row lock in `conversations.lock` does it.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def handle(
        self,
        subscriber: ports.Subscriber,
        event: Event | None,
        update_id: str | None = None,
        language_hint: str | None = None,
        inbound: bool = False,
    ) -> Handled | None:
        """Handle one update; None when `update_id` was handled before. `event=None` re-asks the question.

        `inbound` records that the person wrote now (WhatsApp's 24-hour window opens from it).

        When the database is unreachable the error propagates, so the platform re-delivers the update.
        Any other failure (a bug, data the database refuses) is logged and rolled back, the person gets
        an apology, and the update is recorded so that it is not retried forever.
        """
        key = (subscriber.channel, subscriber.user_key)
        started = time.perf_counter()
        # The update's channel and id on every line logged while it is handled, unless the channel
        # has set them already (bot.core.context).
        update = log_context(channel=subscriber.channel, update_id=update_id, keep=True)
        async with self._lock(key), update:
            try:
                handled = await self._handle(subscriber, event, update_id, language_hint, inbound)
            except Exception as exc:
                if storage_unavailable(exc):
                    _count(update_id, subscriber.channel, "unavailable", started)
                    raise  # let the platform re-deliver the update later
                if isinstance(exc, DBAPIError):
                    # The message holds the statement, never its parameters (hide_parameters on the engine).
                    log.error(
                        "update %s of %s refused by the database: %s", update_id, subscriber.channel, exc
                    )
                else:
                    log.exception("update %s of %s failed", update_id, subscriber.channel)
                lang = await self._record_failed(subscriber, update_id, language_hint)
                _count(update_id, subscriber.channel, "failed", started)
                return Handled(_apology(), lang)
        outcome = "repeated" if handled is None else "handled"
        _count(update_id, subscriber.channel, outcome, started)
        return handled

    async def receive(
        self,
        subscriber: ports.Subscriber,
        event: Event | None,
        update_id: str,
        language_hint: str | None = None,
        inbound: bool = False,
    ) -> tuple[Handled | None, bool]:
        """Every channel's way in: store the update's effect, then say what to answer.

        Returns (what to show, whether the update was new). An update delivered again (the platform
        did not see our confirmation, perhaps before the answer went out) changes nothing; the person
        gets the current question, once per update id. None: nothing to show.
        """
        handled = await self.handle(subscriber, event, update_id, language_hint, inbound)
        if handled is not None:
            return handled, True
        return await self.again(subscriber, update_id), False

    async def again(self, subscriber: ports.Subscriber, update_id: str) -> Handled | None:
        """The current question, for an update delivered again: once per update id, so a replayed
        webhook cannot make the bot write to the person again and again. None the other times."""
        async with self.db.transaction() as session:
            if not await conversations.mark_reshown(session, subscriber.channel, update_id, self.clock()):
                return None
        return await self.handle(subscriber, None)

    async def _handle(
        self,
        subscriber: ports.Subscriber,
        event: Event | None,
        update_id: str | None,
        language_hint: str | None,
        inbound: bool = False,
    ) -> Handled | None:
        now = self.clock()
        outgoing = PendingSms()
        async with self.db.transaction() as session:
            if update_id is not None and not await conversations.mark_processed(
                session, subscriber.channel, update_id, now
            ):
                return None
            lang = normalize_language(language_hint)
            row = await conversations.lock(session, subscriber.channel, subscriber.user_key, lang, now)
            state = State.from_json(row.state, lang=row.lang or lang)
            if inbound:
                await conversations.touch_inbound(session, row.id, now)
            ctx = ports.Context(
                subscriber=subscriber,
                registry=RegistryAdapter(session),
                applications=ApplicationsAdapter(session, now, self.policy),
                sms=outgoing,
                codes=CodeLogAdapter(session),
                links=self.links,
                outages=OutagesAdapter(session, subscriber, now),
                now=now,
            )
            if event is None:
                outcome = await self.dialog.current(state, ctx)
                new_state = state
            else:
                new_state, outcome = await self.dialog.handle(state, event, ctx)
            if outcome.changed or not row.state:
                await conversations.save(
                    session, row.id, new_state.to_json(), new_state.step.value, new_state.lang, now
                )
        if self.on_commit is not None and outbox.queued(session):
            self.on_commit()
        for phone, text, sms_lang in outgoing.queued:  # committed: now the codes may leave
            try:
                await self.sms.send(phone, text, sms_lang)
            except Exception:  # the subscriber can ask for a new code; the update itself stands
                log.exception("SMS to %s could not be handed over", mask_phone(phone))
        return Handled(outcome, new_state.lang)

    async def _record_failed(
        self, subscriber: ports.Subscriber, update_id: str | None, hint: str | None
    ) -> str:
        async with self.db.transaction() as session:
            if update_id is not None:
                await conversations.mark_processed(session, subscriber.channel, update_id, self.clock())
            row = await conversations.get(session, subscriber.channel, subscriber.user_key)
            return row.lang if row else normalize_language(hint)

    async def language(self, subscriber: ports.Subscriber) -> str | None:
        async with self.db.transaction() as session:
            row = await conversations.get(session, subscriber.channel, subscriber.user_key)
            return row.lang if row else None


def _apology() -> Outcome:
    return Outcome((Message((Msg("error.internal"),)),), rev=-1, changed=False)
