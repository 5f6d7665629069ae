"""The staff desk: what staff may do with applications, decided in one place that no transport owns.

Take, change the status, write to the subscriber, propose visit times, move to another department,
/open, /find, /stats, the known outages (/outages, /outage, /outage_close: the storage that
`isiqbot outages` uses), linking a duplicate (/link, as `isiqbot applications link`), the card's
lines and the deadline and visit reminders are decided here, over storage, and come back as neutral
`Reaction`s and `Msg` lines. The Telegram staff chat turns them into toasts, prompts and messages;
the terminal's staff view and `isiqbot applications` call the same methods. Which steps exist comes
from `dialogs.lifecycle`, so a new status needs nothing here.

The methods that take a `session` run inside the caller's transaction (the staff chat records the
update as processed in the same one), and every action, allowed or refused, is written to the audit
trail there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from babel.numbers import format_decimal
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from bot.core.clock import Clock, system_clock
from bot.core.context import bind
from bot.core.departments import Department
from bot.core.policy import StaffPolicy
from bot.staff import outage_until
from dialogs import attachments, lifecycle, notices, visits
from dialogs.errors import Invalid
from dialogs.events import File
from dialogs.lifecycle import IllegalTransition, Role, Status
from dialogs.validate import display_phone
from locales import Msg, translate
from storage import applications, outages, outbox, staff
from storage import visits as visit_rows
from storage.applications import account_label
from storage.db import Database, as_utc
from storage.models import Application, Notification, Outage, Person, StatusChange

_SERIAL = re.compile(r"^\d{1,6}$")
TAKE = "take"  # the card's button that assigns the application to whoever presses it
WRITE = "msg"  # the card's button that asks for a message to the subscriber
MOVE = "move"  # the card's button that offers the other departments to move the application to
TO = "to:"  # a department offered after MOVE: `to:<key>` moves the application there
CANNED = "canned"  # the card's button that offers the department's canned replies
REPLY = "r:"  # a canned reply offered after CANNED: `r:<key>` sends it to the subscriber
VISIT = "visit"  # the card's button that asks for up to three visit windows to offer the subscriber
ACTIONS = (TAKE, *(step.button for step in lifecycle.STAFF_STEPS), WRITE, VISIT, CANNED, MOVE)
STEP_BY_BUTTON = {step.button: step for step in lifecycle.STAFF_STEPS}
COMMANDS = ("open", "find", "stats", "outages", "outage", "outage_close", "link")
RELAY_MAX = 3500  # characters of a staff message to a subscriber
ATTACHED = {"photo": " and a photo", "voice": " and a voice note", "document": " and a document"}  # audit
FIND_MAX = 64  # characters of a /find query
OUTAGE_MAX = 120  # characters of what follows /outage: a region's name and a time
REF = re.compile(r"TX-[0-9]{4}-[0-9]{6}|[0-9]{1,6}", re.IGNORECASE)  # an application's number, or its serial
_OUTAGE_ID = re.compile(r"^[0-9]{1,9}$")  # an outage's id, within the column's integer
DELIVERY_MARKS = {"queued": "⏳", "sending": "⏳", "sent": "✓", "delivered": "✓✓", "failed": "✗"}


class ChannelNames(Protocol):
    """What the desk asks of the channels (`bot.channels.port.Channels`)."""

    def label(self, name: str) -> str: ...

    def takes_photos(self, name: str) -> bool: ...


class _Unnamed:
    def label(self, name: str) -> str:
        return name

    def takes_photos(self, name: str) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Actor:
    """A staff member acting, where they act: their platform's user id, name and chat."""

    id: int
    name: str
    chat_id: int


@dataclass(frozen=True, slots=True)
class Prompt:
    """A question to one staff member (a result, a message to the subscriber), answered by replying."""

    application_id: int
    number: str
    action: str  # a step's button that needs a result, WRITE or VISIT
    actor: Actor

    def text(self) -> Msg:
        if self.action == VISIT:
            params = {"name": self.actor.name, "number": self.number, "example": visits.EXAMPLE}
            return Msg("staff.ask_visit", {**params, "max": visits.MAX_WINDOWS})
        if self.action == WRITE:
            return Msg("staff.ask_message", {"name": self.actor.name, "number": self.number})
        status = status_msg(STEP_BY_BUTTON[self.action].status)
        return Msg("staff.ask_result", {"name": self.actor.name, "number": self.number, "status": status})


@dataclass(frozen=True, slots=True)
class Offer:
    """Choices for the staff member who pressed MOVE (the other departments) or CANNED (the replies)."""

    application_id: int
    question: Msg
    choices: tuple[tuple[str, str], ...]  # (`to:<key>` or `r:<key>` action, its label)


@dataclass(slots=True)
class Reaction:
    """What to show after the commit: a toast, a prompt, an answer in the chat, a 👍 on a message, an
    offer of departments."""

    toast: Msg | None = None
    alert: bool = False
    prompt: Prompt | None = None
    answer: list[Msg] | None = None
    thumbs_up: bool = False
    offer: Offer | None = None


@dataclass(frozen=True, slots=True)
class Card:
    application: Application
    history: Sequence[StatusChange]


def map_link(latitude: float, longitude: float) -> str:
    """A place as a link any phone opens in its maps application."""
    return f"https://maps.google.com/?q={latitude:.6f},{longitude:.6f}"


def status_msg(status: str) -> Msg:
    return Msg(f"status.{status}")


def refusal(exc: IllegalTransition) -> Msg:
    """The lifecycle's explanation, with status names in words."""
    params: dict[str, Any] = {
        k: status_msg(v) if k in ("current", "new", "status") else v for k, v in exc.params.items()
    }
    return Msg(exc.key, params)


def actions(status: str, movable: bool = False, canned: bool = False) -> list[str]:
    """The card's buttons for an application in this status, in order: VISIT while it is open, CANNED
    when the department has canned replies, MOVE while it is open and there is another department."""
    steps = [step.button for step in lifecycle.next_steps(status)]
    is_open = lifecycle.is_open(status)
    extra = [
        *([VISIT] if is_open else []),
        *([CANNED] if canned else []),
        *([MOVE] if is_open and movable else []),
    ]
    return [*([TAKE] if is_open else []), *steps, WRITE, *extra]


def age(delta: timedelta) -> Msg:
    hours = max(int(delta.total_seconds() // 3600), 0)
    if hours < 24:
        return Msg(
            "staff.age_hours", {"hours": hours, "minutes": max(int(delta.total_seconds() // 60) % 60, 0)}
        )
    return Msg("staff.age_days", {"days": hours // 24, "hours": hours % 24})


def delivery_summary(owed: Sequence[Notification]) -> list[tuple[str, str]]:
    """How the subscriber was told, for the card: the latest message of each way (chat, SMS, e-mail)."""
    latest: dict[str, Notification] = {}
    for row in owed:
        if row.channel == outbox.STAFF:
            continue
        via = row.channel if row.channel in (outbox.SMS, outbox.EMAIL) else "chat"
        latest[via] = row
    return [
        (via, DELIVERY_MARKS.get(latest[via].state, "?")) for via in ("chat", "sms", "email") if via in latest
    ]


class StaffDesk:
    def __init__(
        self,
        db: Database,
        clock: Clock = system_clock,
        policy: StaffPolicy | None = None,
        channels: ChannelNames | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy or StaffPolicy()
        self.channels = channels if channels is not None else _Unnamed()

    # ---- reading and changing, each in its own transaction (the terminal, the command line) -------

    async def listed(self, open_only: bool = True) -> Sequence[Application]:
        async with self.db.transaction() as session:
            statuses = [s.value for s in lifecycle.OPEN] if open_only else []
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

    async def link_duplicate(self, ref: str, main_ref: str, actor: str) -> tuple[Application, Application]:
        """`ref` reports the same problem as `main_ref` (`_link`), from the command line. Raises
        IllegalTransition (with a message key)."""
        now = self.clock()
        async with self.db.transaction() as session:
            duplicate, main = await _find(session, ref), await _find(session, main_ref)
            if duplicate is None or main is None:
                raise IllegalTransition("status.error_not_found")
            return await _link(session, duplicate, main, actor, now), main

    async def transfer(self, ref: str, to: str, actor: str) -> tuple[Application, Department]:
        """Move an open application to the department `to` (its key), from the command line: as the
        staff chat's button does. Raises IllegalTransition (with a message key)."""
        now = self.clock()
        async with self.db.transaction() as session:
            app = await _find(session, ref)
            if app is None or app.id is None:
                raise IllegalTransition("status.error_not_found")
            app = await staff.get_for_update(session, app.id)
            assert app is not None
            act = _Act(session, Actor(0, f"cli:{actor}", 0), now)
            target = await self._moved(act, app, to, actor)
            return app, target

    def _offer(self, act: _Act, application: Application, department: Department) -> Reaction:
        """MOVE: the other departments, for the presser to pick one."""
        assert application.id is not None
        if not lifecycle.is_open(application.status):
            act.record(MOVE, False, application.id, f"already {application.status}")
            return Reaction(Msg("staff.move_closed", {"status": status_msg(application.status)}), alert=True)
        others = [d for d in self.departments() if d.key != department.key]
        if not others:
            act.record(MOVE, False, application.id, "no other department")
            return Reaction(Msg("staff.move_nowhere"), alert=True)
        act.record("ask_move", True, application.id)
        question = Msg("staff.ask_move", {"name": act.actor.name, "number": application.number})
        offered = tuple((f"{TO}{d.key}", d.name(department.lang)) for d in others)
        return Reaction(Msg("staff.toast_move"), offer=Offer(application.id, question, offered))

    def _offer_replies(self, act: _Act, application: Application, department: Department) -> Reaction:
        """CANNED: the department's canned replies, for the presser to pick one."""
        assert application.id is not None
        if not department.replies:
            act.record(CANNED, False, application.id, "no canned replies")
            return Reaction(Msg("staff.canned_none"), alert=True)
        act.record("ask_canned", True, application.id)
        question = Msg("staff.ask_canned", {"name": act.actor.name, "number": application.number})
        offered = tuple((f"{REPLY}{r.key}", r.title(department.lang)) for r in department.replies)
        return Reaction(Msg("staff.toast_canned_pick"), offer=Offer(application.id, question, offered))

    async def _canned(
        self, act: _Act, application: Application, department: Department, key: str
    ) -> Reaction:
        """A canned reply picked: it goes to the subscriber in their language, signed with the
        department's name like any staff message, and the thread says which one went."""
        assert application.id is not None
        reply = department.reply(key)
        if reply is None:  # a reply taken out of the file since it was offered
            act.record(CANNED, False, application.id, f"no canned reply {key!r}")
            return Reaction(Msg("staff.stale_button"), alert=True)
        sent = self._relay(
            act, department, application, reply.text(application.lang, application.number), None, None
        )
        if not sent.thumbs_up:
            return Reaction(sent.answer[0] if sent.answer else None, alert=True)
        note = {
            "key": "staff.note_canned",
            "params": {"name": act.actor.name, "title": reply.title(department.lang)},
        }
        await staff.to_thread(act.session, application.id, "note", note, act.now)
        return Reaction(Msg("staff.toast_canned_sent", {"number": application.number}))

    async def _move(self, act: _Act, application: Application, to: str) -> Reaction:
        """A department picked from the offer: the application moves there."""
        try:
            target = await self._moved(act, application, to, act.actor.name)
        except IllegalTransition as exc:
            return Reaction(refusal(exc), alert=True)
        return Reaction(
            Msg("staff.toast_moved", {"number": application.number, "department": target.name(target.lang)})
        )

    async def _moved(self, act: _Act, application: Application, to: str, name: str) -> Department:
        """Move it, audited: a new card in the new department's chat, the old card closed with a line
        saying where it went, a note in the new thread saying where it came from, and the subscriber
        (and the chats following it) told which department has it now."""
        assert application.id is not None
        source = self.policy.departments.by_key(application.department or "")
        target = self.policy.departments.by_key(to)
        if not lifecycle.is_open(application.status):
            act.record(MOVE, False, application.id, f"already {application.status}")
            raise IllegalTransition("staff.move_closed", status=application.status)
        if target is None:
            act.record(MOVE, False, application.id, f"no department {to!r}")
            raise IllegalTransition("staff.move_unknown", department=to)
        if source is not None and target.key == source.key:
            act.record(MOVE, False, application.id, f"already in {to}")
            raise IllegalTransition("staff.move_same", department=target.name(target.lang))
        before = await staff.move(act.session, application, target.key, target.chat_id, act.now)
        came_from = source.key if source is not None else (application.department or "")
        act.record(MOVE, True, application.id, f"{came_from or '—'} → {target.key}")
        if before is not None:  # the old card: no buttons any more, and a line saying where it went
            payload = {
                "message_id": before.card_message_id,
                "topic_id": before.topic_id,
                "key": "staff.card_moved",
                "params": {"name": name, "department": target.name(target.lang)},
            }
            outbox.enqueue(
                act.session,
                channel=outbox.STAFF,
                user_key=str(before.chat_id),
                kind=staff.MOVED,
                payload=payload,
                now=act.now,
                application_id=application.id,
            )
        origin = source.name(target.lang) if source is not None else "—"
        note = {"key": "staff.note_moved_in", "params": {"name": name, "department": origin}}
        await staff.to_thread(act.session, application.id, "note", note, act.now)
        await applications.tell(
            act.session, application, notices.transferred(application.number, target.key), act.now
        )
        return target

    @property
    def movable(self) -> bool:
        """Whether there is more than one department, so an application may move between them."""
        return len(self.departments()) > 1

    def departments(self) -> list[Department]:
        """Where an application may move: every department of the file, and the default one."""
        departments = list(self.policy.departments)
        fallback = self.policy.departments.fallback
        return [*departments, *([fallback] if fallback is not None else [])]

    # ---- a staff chat's actions, inside the caller's transaction ----------------------------------

    async def press(
        self,
        session: AsyncSession,
        department: Department,
        actor: Actor,
        button: tuple[int, str] | None,
        allowed: bool,
        now: datetime,
    ) -> Reaction:
        """A card's button: (application id, action), or None for a button that is not ours."""
        act = _Act(session, actor, now)
        if button is None:
            act.record("press", False, None, "not a button of ours")
            return Reaction(Msg("staff.stale_button"), alert=True)
        application_id, action = button
        application = await staff.get_for_update(session, application_id)
        if application is not None:
            bind(application=application.number)  # on the lines logged about this press
        refused = _refused(act, application, application_id, action, department, allowed)
        if refused is not None:
            return refused
        assert application is not None
        if action == TAKE:
            return await _take(act, application)
        if action == WRITE:
            act.record("ask_message", True, application_id)
            return Reaction(
                Msg("staff.toast_write"), prompt=Prompt(application_id, application.number, action, actor)
            )
        if action == VISIT:
            return _ask_visit(act, application)
        if action == MOVE:
            return self._offer(act, application, department)
        if action == CANNED:
            return self._offer_replies(act, application, department)
        if action.startswith(REPLY):
            return await self._canned(act, application, department, action.removeprefix(REPLY))
        if action.startswith(TO):
            return await self._move(act, application, action.removeprefix(TO))
        return await _step(act, application, STEP_BY_BUTTON[action])

    async def answer(
        self,
        session: AsyncSession,
        department: Department,
        actor: Actor,
        application_id: int,
        prompt: tuple[str, int | None] | None,
        content: tuple[str, str | None, File | None],
        allowed: bool,
        now: datetime,
    ) -> Reaction:
        """A staff member's message about an application: the answer to a result prompt (the prompt's
        action and whom it asked), or else a message to the subscriber. `content` is (text, photo, a
        voice note or a document)."""
        act = _Act(session, actor, now)
        if not allowed:
            act.record("message", False, application_id, "not on the department's staff")
            return Reaction(answer=[Msg("staff.refused_not_staff")])
        application = await staff.get_for_update(session, application_id)
        if application is not None:
            bind(application=application.number)  # on the lines logged about this message
        if application is None or application.department != department.key:
            act.record("message", False, application_id, "another department's application")
            return Reaction(answer=[Msg("staff.refused_department")])
        text, photo, file = content[0].strip(), content[1], content[2]
        if prompt is not None and prompt[0] in STEP_BY_BUTTON:
            if prompt[1] != actor.id:
                return Reaction(answer=[Msg("staff.prompt_other")])
            return await _result(act, application, STEP_BY_BUTTON[prompt[0]], text)
        if prompt is not None and prompt[0] == VISIT:
            if prompt[1] != actor.id:
                return Reaction(answer=[Msg("staff.prompt_other")])
            return await _propose(act, application, text)
        return self._relay(act, department, application, text, photo, file)

    def _relay(
        self,
        act: _Act,
        department: Department,
        application: Application,
        text: str,
        photo: str | None,
        file: File | None,
    ) -> Reaction:
        """A staff member's message to the subscriber, signed with the department's name: text, with a
        photo, a voice note or a document (checked as a subscriber's are: its type and size)."""
        assert application.id is not None
        item = None
        if file is not None:
            try:
                item = attachments.checked(file.kind, file.ref, file.mime, file.size, file.name)
            except Invalid as exc:
                return Reaction(answer=[exc.msg])
        if not text and photo is None and item is None:
            return Reaction(answer=[Msg("staff.relay_unsupported")])
        if len(text) > RELAY_MAX:
            return Reaction(answer=[Msg("staff.relay_long", {"max": RELAY_MAX, "length": len(text)})])
        if (photo is not None or item is not None) and not self.channels.takes_photos(application.channel):
            return Reaction(answer=[Msg("staff.relay_files_channel")])
        outbox.enqueue(
            act.session,
            channel=application.channel,
            user_key=application.user_key,
            lang=application.lang,
            kind="staff_message",
            payload={
                "department": department.key,
                "number": application.number,
                "text": text,
                "photo": photo,
                "file": item,
            },
            now=act.now,
            application_id=application.id,
        )
        attached = "photo" if photo else str(item["kind"]) if item else ""
        act.record("message", True, application.id, f"{len(text)} characters{ATTACHED.get(attached, '')}")
        return Reaction(thumbs_up=True)

    async def command(
        self,
        session: AsyncSession,
        department: Department,
        actor: Actor,
        name: str,
        arg: str,
        allowed: bool,
        now: datetime,
    ) -> Reaction:
        """/open, /find <text>, /stats, /outages, /outage <region> <until>, /outage_close <id>,
        /link <duplicate> <main>: the answer's lines."""
        act = _Act(session, actor, now)
        if not allowed:
            act.record(f"/{name}", False, None, "not on the department's staff")
            return Reaction(answer=[Msg("staff.refused_not_staff")])
        if name == "outage":
            return Reaction(answer=[await self._declare(act, department, arg)])
        if name == "outage_close":
            return Reaction(answer=[await self._close_outage(act, department, arg)])
        if name == "link":
            return Reaction(answer=[await _link_command(act, department, arg)])
        act.record(f"/{name}", True, None)
        if name == "outages":
            return Reaction(answer=await _outages(session))
        if name == "open":
            return Reaction(answer=await self._open(session, department, now))
        if name == "find":
            return Reaction(answer=await self._find(session, department, arg.strip()))
        return Reaction(answer=await self._stats(session, department, now))

    async def _open(self, session: AsyncSession, department: Department, now: datetime) -> list[Msg]:
        rows = await staff.open_applications(session, department.key)
        if not rows:
            return [Msg("staff.open_empty")]
        lines = [Msg("staff.open_title", {"count": len(rows)})]
        for app in rows:
            params = {
                "flag": "⏰ " if self._late(app, now) else "",
                "number": app.number,
                "age": age(now - as_utc(app.created_at)),
                "status": status_msg(app.status),
                "assignee": app.assignee_name or "—",
            }
            lines.append(Msg("staff.open_line", params))
        return lines

    async def _find(self, session: AsyncSession, department: Department, query: str) -> list[Msg]:
        if not query:
            return [Msg("staff.find_usage")]
        rows = await staff.find(session, query[:FIND_MAX], department.key)
        if not rows:
            return [Msg("staff.find_none")]
        return [
            Msg(
                "staff.find_line",
                {
                    "number": app.number,
                    "status": status_msg(app.status),
                    "account": account_label(app),
                    "date": as_utc(app.created_at),
                    "phone": display_phone(app.mobile),
                },
            )
            for app in rows
        ]

    async def _stats(self, session: AsyncSession, department: Department, now: datetime) -> list[Msg]:
        stats = await staff.stats(session, department.key, now)
        lines = [Msg("staff.stats_title", {"department": department.name(department.lang)})]
        for status in Status:
            count = stats.by_status.get(status, 0)
            lines.append(Msg("staff.stats_line", {"status": status_msg(status), "count": count}))
        for days, median, count in (
            (7, stats.median_7, stats.results_7),
            (30, stats.median_30, stats.results_30),
        ):
            shown = age(median) if median is not None else "—"
            lines.append(Msg("staff.stats_median", {"days": days, "median": shown, "count": count}))
        lang = department.lang
        for period, rated in (
            (Msg("staff.stats_period_days", {"days": 30}), stats.ratings_30),
            (Msg("staff.stats_period_all"), stats.ratings_all),
        ):
            lines.append(_ratings_line(period, rated, lang))
        return lines

    async def _declare(self, act: _Act, department: Department, arg: str) -> Msg:
        """/outage <region> <until>: a known outage of a region of the registry, as `isiqbot outages add`
        declares it; subscribers reporting no power there are told before they file."""
        text = " ".join(arg.split())
        words = text.split(" ")
        cut = -2 if len(words) >= 3 and outage_until.DAY_WORD.fullmatch(words[-2]) else -1
        typed, when = " ".join(words[:cut]), " ".join(words[cut:])
        if not typed or len(text) > OUTAGE_MAX:
            act.record("/outage", False, None, f"unreadable: {text[:OUTAGE_MAX]!r}")
            return Msg("staff.outage_usage")
        try:
            until = outage_until.parse_until(when, act.now)
        except outage_until.UntilError as exc:
            act.record("/outage", False, None, f"until {exc.reason}: {when!r}")
            return Msg(
                f"staff.outage_until_{exc.reason}", {"until": when, "days": outage_until.MAX_AHEAD.days}
            )
        region, known = await outages.region_named(act.session, typed)
        if region is None:
            act.record("/outage", False, None, f"no region {typed!r}")
            listed = ", ".join(known[:30]) or "—"
            return Msg("staff.outage_region_unknown", {"region": typed, "known": listed})
        refused = self._others_region(act, "/outage", department, region)
        if refused is not None:
            return refused
        outage = await outages.declare(
            act.session,
            region=region,
            points=(),
            until=until,
            note=None,
            declared_by=act.actor.name,
            now=act.now,
        )
        act.record("/outage", True, None, f"outage {outage.id}: {region} until {until.isoformat()}")
        return Msg("staff.outage_declared", {"id": outage.id, "region": region, "until": until})

    async def _close_outage(self, act: _Act, department: Department, arg: str) -> Msg:
        """/outage_close <id>: power is back; every chat that asked is told, through the outbox."""
        typed = arg.strip()
        if not _OUTAGE_ID.fullmatch(typed):
            act.record("/outage_close", False, None, f"unreadable: {typed[:40]!r}")
            return Msg("staff.outage_close_usage")
        outage = await act.session.get(Outage, int(typed))
        if outage is not None and outage.region is not None and outage.closed_at is None:
            refused = self._others_region(act, "/outage_close", department, outage.region)
            if refused is not None:
                return refused
        told = await outages.close(act.session, int(typed), act.now)
        if told is None:
            act.record("/outage_close", False, None, f"no open outage {int(typed)}")
            return Msg("staff.outage_close_unknown", {"id": int(typed)})
        act.record("/outage_close", True, None, f"outage {int(typed)}: {told} chats told")
        return Msg("staff.outage_closed", {"id": int(typed), "count": told})

    def _others_region(self, act: _Act, action: str, department: Department, region: str) -> Msg | None:
        """Why this department may not declare or close an outage of `region`: another one serves it."""
        owner = self.policy.departments.for_region(region)
        if owner is None or owner.key == department.key:
            return None
        act.record(action, False, None, f"{region} is served by department {owner.key}")
        return Msg(
            "staff.outage_other_department", {"region": region, "department": owner.name(department.lang)}
        )

    # ---- the card and the deadlines -----------------------------------------------------------------

    def _late(self, application: Application, now: datetime) -> bool:
        return staff.overdue(application, now, self.policy.take_within, self.policy.done_within)

    def card_text(
        self,
        application: Application,
        person: Person | None,
        lang: str,
        deliveries: Sequence[tuple[str, str]] = (),
        visit: Msg | None = None,
    ) -> str:
        """The staff card, as it is for the application's current state (`visit`: its visit line)."""
        lines = [
            Msg("staff.card_title", {"number": application.number}),
            Msg(f"staff.card_kind_{application.kind}"),
            Msg("staff.card_account", {"account": account_label(application)}),
            Msg(
                "staff.card_address",
                {"address": application.address or "—", "region": application.region or "—"},
            ),
            Msg("staff.card_reason", {"reason": Msg(f"reason.{application.reason}")}),
            Msg("staff.card_description", {"text": application.description or "—"}),
        ]
        if person is not None:
            lines.append(Msg("staff.card_applicant", {"name": person.full_name}))
        phones = [display_phone(application.mobile)] + [display_phone(p) for p in application.extra_phones]
        lines.append(Msg("staff.card_phones", {"phones": ", ".join(phones)}))
        lines.append(Msg("staff.card_email", {"email": application.email or "—"}))
        attached = attachments.summary(
            attachments.of_application(application.photo_ref, application.attachments)
        )
        if attached is not None:
            lines.append(Msg("staff.card_attachments", {"list": attached}))
        if application.latitude is not None and application.longitude is not None:
            place = map_link(application.latitude, application.longitude)
            lines.append(Msg("staff.card_location", {"url": place}))
        channel = self.channels.label(application.channel)
        lines.append(Msg("staff.card_channel", {"channel": channel, "date": as_utc(application.created_at)}))
        lines += self._state_lines(application, lang, deliveries)
        if visit is not None and lifecycle.is_open(application.status):
            lines.append(visit)
        return "\n".join(translate(line, lang) for line in lines)

    def _state_lines(
        self, application: Application, lang: str, deliveries: Sequence[tuple[str, str]]
    ) -> list[Msg]:
        lines = [
            Msg("staff.card_status", {"status": status_msg(application.status)}),
            Msg("staff.card_assignee", {"name": application.assignee_name or "—"}),
        ]
        if application.updated_at and as_utc(application.updated_at) > as_utc(application.created_at):
            lines.append(Msg("staff.card_changed", {"date": as_utc(application.updated_at)}))
        if application.result:
            label = Msg(f"result.{application.status}")  # "the result", or the reason for a refusal
            lines.append(Msg("staff.card_result", {"label": label, "text": application.result}))
        if deliveries:
            told = " · ".join(
                f"{translate(Msg(f'staff.via_{via}'), lang)} {mark}" for via, mark in deliveries
            )
            lines.append(Msg("staff.card_told", {"deliveries": told}))
        if lifecycle.is_open(application.status):
            due = staff.due_at(application, self.policy.done_within)
            key = "staff.card_due_late" if self._late(application, self.clock()) else "staff.card_due"
            lines.append(Msg(key, {"date": due}))
        return lines

    async def check_deadlines(self, now: datetime) -> int:
        """Flag each application past a deadline once, in its thread. Returns how many were flagged."""
        policy = self.policy
        async with self.db.transaction() as session:
            flagged = await staff.flag_overdue(session, now, policy.take_within, policy.done_within)
            for application, which in flagged:
                assert application.id is not None
                if which == "take":
                    hours = f"{policy.take_within.total_seconds() / 3600:g}"
                    note = {
                        "key": "staff.remind_take",
                        "params": {"number": application.number, "hours": hours},
                    }
                else:
                    days = f"{policy.done_within.total_seconds() / 86400:g}"
                    note = {
                        "key": "staff.remind_done",
                        "params": {"number": application.number, "days": days},
                    }
                await staff.to_thread(session, application.id, "note", note, now)
        return len(flagged)

    async def remind_visits(self, now: datetime) -> int:
        """The evening before a picked visit (18:00 Baku), remind the subscriber's chat and the staff
        thread, once each, whatever restarts or replicas; a visit picked after that hour was just
        confirmed and is not reminded. Returns how many reminders were queued."""
        queued = 0
        async with self.db.transaction() as session:
            for visit, application in await visit_rows.due_reminders(session, now, timedelta(days=2)):
                window = visit_rows.chosen_window(visit)
                assert application.id is not None
                if window is None or visit.chosen_at is None or now < visits.remind_at(window[0]):
                    continue
                if as_utc(visit.chosen_at) >= visits.remind_at(window[0]):
                    continue  # picked on the evening before or later: the confirmation was the reminder
                shown = visits.shown(window)
                if await visit_rows.claim(session, visit, "reminded_subscriber_at", now):
                    told = [notices.visit_reminder(application.number, shown)]
                    await applications.tell(session, application, told, now)
                    queued += 1
                if await visit_rows.claim(session, visit, "reminded_staff_at", now):
                    note = {
                        "key": "staff.note_visit_reminder",
                        "params": {"number": application.number, "window": shown},
                    }
                    await staff.to_thread(session, application.id, "note", note, now)
                    queued += 1
        return queued


async def card_visit(session: AsyncSession, application_id: int) -> Msg | None:
    """The card's line about the visit: the one agreed, or the times offered and not answered yet."""
    visit = await visit_rows.get(session, application_id)
    if visit is None:
        return None
    chosen = visit_rows.chosen_window(visit)
    if chosen is not None:
        return Msg("staff.card_visit", {"window": visits.shown(chosen)})
    if visit.declined_at is not None:
        return Msg("staff.card_visit_declined")
    offered = ", ".join(visits.shown(w) for w in visit_rows.windows_of(visit))
    return Msg("staff.card_visit_offered", {"windows": offered})


def _ask_visit(act: _Act, application: Application) -> Reaction:
    """VISIT: a prompt for up to three windows, answered by replying to it."""
    assert application.id is not None
    if not lifecycle.is_open(application.status):
        act.record(VISIT, False, application.id, f"already {application.status}")
        return Reaction(Msg("staff.visit_closed", {"status": status_msg(application.status)}), alert=True)
    act.record("ask_visit", True, application.id)
    return Reaction(
        Msg("staff.toast_write"), prompt=Prompt(application.id, application.number, VISIT, act.actor)
    )


async def _propose(act: _Act, application: Application, text: str) -> Reaction:
    """The windows a VISIT prompt asked for: stored, offered to the subscriber, noted in the thread."""
    assert application.id is not None
    if not lifecycle.is_open(application.status):
        act.record(VISIT, False, application.id, f"already {application.status}")
        return Reaction(answer=[Msg("staff.visit_closed", {"status": status_msg(application.status)})])
    try:
        windows = visits.parse(text, act.now)
    except Invalid as exc:
        act.record(VISIT, False, application.id, f"unreadable: {exc.msg.key}")
        return Reaction(answer=[exc.msg])
    await visit_rows.propose(act.session, application.id, windows, act.actor.name, act.now)
    act.record(VISIT, True, application.id, f"{len(windows)} windows")
    shown = [visits.shown(window) for window in windows]
    await applications.tell(
        act.session, application, notices.visit_proposed(application.number, shown), act.now
    )
    note = {
        "key": "staff.note_visit_proposed",
        "params": {"name": act.actor.name, "windows": ", ".join(shown)},
    }
    await staff.to_thread(act.session, application.id, "note", note, act.now)
    await staff.to_thread(act.session, application.id, "card_refresh", {}, act.now)
    return Reaction(thumbs_up=True)


async def _outages(session: AsyncSession) -> list[Msg]:
    """/outages: the open outages, as `isiqbot outages list` shows them."""
    rows = await outages.open_ones(session)
    if not rows:
        return [Msg("staff.outages_empty")]
    waiting = await outages.watchers(session, [o.id for o in rows if o.id is not None])
    lines = [Msg("staff.outages_title", {"count": len(rows)})]
    for outage in rows:
        assert outage.id is not None
        if outage.region and outage.points:
            where = Msg(
                "staff.outage_region_points", {"region": outage.region, "points": ", ".join(outage.points)}
            )
        elif outage.region:
            where = Msg("staff.outage_region", {"region": outage.region})
        else:
            where = Msg("staff.outage_points", {"points": ", ".join(outage.points)})
        params = {
            "id": outage.id,
            "where": where,
            "until": as_utc(outage.until),
            "waiting": waiting.get(outage.id, 0),
            "name": outage.declared_by,
        }
        lines.append(Msg("staff.outages_line", params))
    return lines


async def _link_command(act: _Act, department: Department, arg: str) -> Msg:
    """/link <duplicate> <main>: as `isiqbot applications link`, for this department's applications."""
    refs = arg.split()
    if len(refs) != 2 or not all(REF.fullmatch(ref) for ref in refs):
        act.record("/link", False, None, f"unreadable: {' '.join(refs)[:60]!r}")
        return Msg("staff.link_usage")
    duplicate, main = await _find(act.session, refs[0]), await _find(act.session, refs[1])
    for ref, found in zip(refs, (duplicate, main), strict=True):
        if found is None:
            act.record("/link", False, None, f"no application {ref.upper()}")
            return Msg("staff.link_not_found", {"number": ref.upper()})
        if found.department != department.key:
            act.record("/link", False, found.id, f"belongs to department {found.department}")
            return Msg("staff.link_department", {"number": found.number})
    assert duplicate is not None and main is not None
    try:
        closed = await _link(act.session, duplicate, main, f"staff:{act.actor.id}", act.now, department.key)
    except IllegalTransition as exc:
        act.record("/link", False, duplicate.id, f"{duplicate.number} → {main.number}: {exc.key}")
        return refusal(exc)
    act.record("/link", True, closed.id, f"{closed.number} is a duplicate of {main.number}")
    return Msg("staff.linked", {"duplicate": closed.number, "main": main.number})


async def _link(
    session: AsyncSession,
    duplicate: Application,
    main: Application,
    actor: str,
    now: datetime,
    department: str | None = None,
) -> Application:
    """`duplicate` reports the same problem as `main`: it is closed (rejected, the main one named in
    its result, in its subscriber's language), and its chat and followers follow the main one, whose
    news reach them from now on. From a staff chat both must be its `department`'s, as they are once
    held. Raises IllegalTransition (with a message key) before changing anything when it may not be."""
    assert duplicate.id is not None and main.id is not None
    if duplicate.id == main.id:
        raise IllegalTransition("duplicate.error_same")
    for application in sorted((duplicate, main), key=lambda a: a.id or 0):  # one order: no deadlock
        await session.refresh(application, with_for_update=True)  # as it is now, and held
        if department is not None and application.department != department:  # moved meanwhile
            raise IllegalTransition("staff.link_department", number=application.number)
    if not lifecycle.is_open(main.status):
        raise IllegalTransition("duplicate.error_main_closed", number=main.number)
    result = translate(Msg("duplicate.linked", {"number": main.number}), duplicate.lang)
    closed = await applications.change_status(
        session, duplicate.id, Status.REJECTED, actor=actor, role=Role.STAFF, note=result, now=now
    )
    for channel, user_key, lang in await applications.chats_of(session, duplicate):
        if (channel, user_key) != (main.channel, main.user_key):
            await applications.follow(session, main.id, channel, user_key, lang, now)
    return closed


@dataclass(frozen=True, slots=True)
class _Act:
    """One staff action being decided: in this transaction, by this person, now, audited as it goes."""

    session: AsyncSession
    actor: Actor
    now: datetime

    def record(self, action: str, ok: bool, application_id: int | None, detail: str | None = None) -> None:
        """One line of the audit trail, allowed or refused, in the action's transaction."""
        staff.audit(
            self.session,
            chat_id=self.actor.chat_id,
            user_id=self.actor.id,
            user_name=self.actor.name,
            action=action,
            allowed=ok,
            now=self.now,
            application_id=application_id,
            detail=detail,
        )


def _refused(
    act: _Act,
    application: Application | None,
    application_id: int,
    action: str,
    department: Department,
    allowed: bool,
) -> Reaction | None:
    """Why a button may not be pressed by this person on this application, or None when it may."""
    if application is None:
        act.record(action, False, None, f"no application {application_id}")
        return Reaction(Msg("status.error_not_found"), alert=True)
    if application.department != department.key:
        act.record(action, False, application_id, f"belongs to department {application.department}")
        return Reaction(Msg("staff.refused_department"), alert=True)
    if not allowed:
        act.record(action, False, application_id, "not on the department's staff")
        return Reaction(Msg("staff.refused_not_staff"), alert=True)
    return None


def _ratings_line(period: Msg, rated: staff.Ratings, lang: str) -> Msg:
    """The subscribers' ratings over a period: the average, and the share of low ones (1–2 stars)."""
    if rated.average is None:
        return Msg("staff.stats_rating_none", {"period": period})
    params = {
        "period": period,
        "average": format_decimal(rated.average, "0.0", locale=lang),
        "count": rated.count,
        "low": rated.low,
        "share": format_decimal(rated.low_share * 100, "0", locale=lang),
    }
    return Msg("staff.stats_rating", params)


async def _take(act: _Act, application: Application) -> Reaction:
    """The card's "Take": the presser becomes the assignee (taking over from someone is recorded)."""
    assert application.id is not None
    if not lifecycle.is_open(application.status):
        act.record(TAKE, False, application.id, f"already {application.status}")
        return Reaction(Msg("staff.take_closed", {"status": status_msg(application.status)}), alert=True)
    if application.assignee_id not in (None, act.actor.id):
        act.record(TAKE, True, application.id, f"taken over from {application.assignee_name}")
    staff.assign(application, act.actor.id, act.actor.name, act.now)
    await staff.to_thread(act.session, application.id, "card_refresh", {}, act.now)
    act.record(TAKE, True, application.id)
    return Reaction(Msg("staff.toast_taken", {"number": application.number}))


async def _step(act: _Act, application: Application, step: lifecycle.StaffStep) -> Reaction:
    """A status button: the change at once, or first a prompt for the result it needs."""
    assert application.id is not None
    target = step.status
    if target not in lifecycle.TRANSITIONS[Status(application.status)]:
        exc = IllegalTransition("status.error_transition", current=application.status, new=target.value)
        act.record(step.button, False, application.id, f"{application.status} → {target.value}")
        return Reaction(refusal(exc), alert=True)
    if target in lifecycle.NEEDS_RESULT:  # asked for the result first; the status changes with it
        act.record(f"ask_{target.value}", True, application.id)
        prompt = Prompt(application.id, application.number, step.button, act.actor)
        return Reaction(Msg("staff.toast_write"), prompt=prompt)
    await _change(act, application, target, None)
    act.record(target.value, True, application.id)
    return Reaction(Msg("staff.toast_status", {"number": application.number, "status": status_msg(target)}))


async def _result(act: _Act, application: Application, step: lifecycle.StaffStep, text: str) -> Reaction:
    """The result a prompt asked for: the status changes with it, and the thread says so."""
    assert application.id is not None
    target = step.status
    try:
        await _change(act, application, target, text)
    except IllegalTransition as exc:
        act.record(target.value, False, application.id, exc.key)
        return Reaction(answer=[refusal(exc)])
    act.record(target.value, True, application.id, f"result of {len(text)} characters")
    note = {
        "key": "staff.note_status",
        "params": {
            "icon": step.icon,
            "name": act.actor.name,
            "number": application.number,
            "status": {"$msg": f"status.{target}"},
        },
    }
    await staff.to_thread(act.session, application.id, "note", note, act.now)
    return Reaction(thumbs_up=True)


async def _change(act: _Act, application: Application, target: Status, note: str | None) -> None:
    """A status change by a staff member, who is its assignee unless someone took it before."""
    assert application.id is not None
    if application.assignee_id is None:
        staff.assign(application, act.actor.id, act.actor.name, act.now)
    actor = f"staff:{act.actor.id}"
    await applications.change_status(
        act.session, application.id, target, actor=actor, role=Role.STAFF, note=note, now=act.now
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
