"""The terminal channel: the whole service in a console, as a subscriber and, after /staff, as staff.

Choices are numbered: type the number. The platform's buttons have stand-ins:
`/contact +994…` shares a contact, `/photo NAME` attaches a photo, `/location LAT LON` a location.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TextIO

from bot.core.links import ChatLink
from bot.core.service import Conversations, Handled
from bot.notify.outbox import Permanent, Sender
from bot.staff.desk import StaffDesk, refusal
from bot.web.server import Route
from dialogs.events import Command, Contact, Event, Location, Photo, Pressed, Text
from dialogs.lifecycle import STAFF_STEPS, IllegalTransition, Status
from dialogs.ports import Subscriber
from dialogs.replies import Message, Request
from dialogs.validate import display_phone, mask_phone
from locales import LANGUAGES, Msg, payload_msg, translate
from storage import conversations
from storage.db import as_utc

CHANNEL = "terminal"
PHOTO_PREFIX = "terminal:"
STAFF_ACTOR = "staff:terminal"
STATUS_COMMANDS = {command: step.status for step in STAFF_STEPS for command in step.commands}


class TerminalChannel:
    """The terminal on the channel port: one person at a console, so no webhooks, senders or links.

    Its messages are shown by `Terminal` as they come (`pending_notifications`), and its "photos" are
    file names typed after /photo, which no other channel can show.
    """

    name = CHANNEL
    label = "terminal"
    photos = False

    def routes(self) -> Sequence[Route]:
        return []

    def senders(self) -> Mapping[str, Sender]:
        return {}

    def background(self, stop: asyncio.Event) -> Mapping[str, Coroutine[Any, Any, None]]:
        return {}

    async def start(self) -> None:
        return None

    async def problem(self) -> str | None:
        return None

    async def settle(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def holds(self, ref: str) -> bool:
        return ref.startswith(PHOTO_PREFIX)

    async def media(self, ref: str) -> tuple[bytes, str]:
        raise Permanent("a terminal photo is only a name")

    def chat_link(self, token: str, number: str) -> ChatLink | None:
        return None


class TerminalSms:
    """In the terminal an SMS is shown, so the one-time code can be typed back."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    async def send(self, phone: str, text: Msg, lang: str) -> None:
        header = translate(Msg("terminal.sms", {"phone": mask_phone(phone)}), lang)
        self.write(f"\n{header}\n  {translate(text, lang)}\n")


def render(message: Message, lang: str) -> str:
    """A neutral message as console text: paragraphs, then numbered choices."""
    lines = [translate(part, lang) for part in message.parts]
    if message.request == Request.CONTACT:
        lines.append(translate(Msg("terminal.contact_hint"), lang))
    elif message.request == Request.LOCATION:
        lines.append(translate(Msg("terminal.location_hint"), lang))
    for number, choice in enumerate(message.choices, start=1):
        lines.append(f"  {number}. {translate(choice.label, lang)}")
    return "\n".join(lines)


def parse_input(line: str, last: Message | None, rev: int) -> Event | None:
    """Turn a typed line into an event; None for a terminal-only command handled elsewhere."""
    text = line.rstrip("\n")
    stripped = text.strip()
    if (
        last is not None
        and stripped.isascii()
        and stripped.isdigit()
        and 1 <= int(stripped) <= len(last.choices)
    ):
        return Pressed(last.choices[int(stripped) - 1].id, rev)
    if stripped.startswith("/") and len(stripped) > 1:
        name, _, arg = stripped[1:].partition(" ")
        name = name.lower()
        if name == "contact":
            return Contact(arg.strip(), own=True)
        if name == "photo":
            return Photo(f"{PHOTO_PREFIX}{arg.strip() or 'photo.jpg'}")
        if name == "location":
            try:
                lat, lon = (float(v.replace(",", ".")) for v in arg.split())
            except ValueError:
                return Location(float("nan"), float("nan"))
            return Location(lat, lon)
        return Command(name, arg.strip())
    return Text(text)


class Terminal:
    def __init__(
        self,
        service: Conversations,
        desk: StaffDesk,
        read_line: Callable[[], Awaitable[str]],
        out: TextIO = sys.stdout,
        user: str = "local",
        lang: str = "az",
    ) -> None:
        self.service = service
        self.desk = desk
        self.read_line = read_line
        self.out = out
        self.subscriber = Subscriber(CHANNEL, user)
        self.lang = lang
        self.last: Message | None = None
        self.rev = 0
        self.staff_mode = False

    def write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def t(self, key: str, **params: object) -> str:
        return translate(Msg(key, params), self.lang)

    async def run(self) -> None:
        self.write(self.t("terminal.banner"))
        await self._show(
            await self.service.handle(self.subscriber, Command("start"), language_hint=self.lang)
        )
        while True:
            prompt = "staff> " if self.staff_mode else "> "
            self.out.write(prompt)
            self.out.flush()
            line = await self.read_line()
            if line == "":  # end of input
                self.write("")
                return
            stripped = line.strip()
            if stripped in ("/quit", "/exit"):
                return
            if self.staff_mode:
                await self._staff(stripped)
                continue
            if stripped == "/staff":
                self.staff_mode = True
                self.write(self.t("terminal.staff_mode"))
                continue
            event = parse_input(line, self.last, self.rev)
            if event is not None:
                await self._show(await self.service.handle(self.subscriber, event, language_hint=self.lang))
            await self._deliver_notifications()

    async def _show(self, handled: Handled | None) -> None:
        if handled is None:
            return
        self.lang = handled.lang
        outcome = handled.outcome
        for message in outcome.messages:
            self.write("\n" + render(message, self.lang))
        if outcome.rev >= 0:
            self.rev = outcome.rev
            self.last = outcome.messages[-1] if outcome.messages else None

    async def _deliver_notifications(self) -> None:
        """Show the messages owed to this subscriber (staff status changes), then mark them sent."""
        async with self.service.db.transaction() as session:
            pending = await conversations.pending_notifications(session, CHANNEL, self.subscriber.user_key)
            row = await conversations.get(session, CHANNEL, self.subscriber.user_key)
            lang = row.lang if row else self.lang
            for notification in pending:
                self.write("\n" + translate(Msg("terminal.incoming"), lang))
                self.write(translate(payload_msg(notification.payload), lang))
            await conversations.mark_sent(
                session, [n.id for n in pending if n.id is not None], self.service.clock()
            )

    # ---- the staff view ------------------------------------------------------------------------

    async def _staff(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        if not words:
            return
        command, args = words[0].lower().lstrip("/"), words[1:]
        if command in ("subscriber", "back"):
            self.staff_mode = False
            self.write(self.t("terminal.subscriber_mode"))
            await self._deliver_notifications()
            await self._show(await self.service.handle(self.subscriber, None))
        elif command in ("list", "all"):
            await self._staff_list(open_only=command == "list")
        elif command == "show" and args:
            await self._staff_show(args[0])
        elif command in STATUS_COMMANDS and args:
            await self._staff_status(args[0], STATUS_COMMANDS[command], " ".join(args[1:]) or None)
        elif command == "lang" and args and args[0] in LANGUAGES:
            self.lang = args[0]
            self.write(self.t("lang.changed"))
        else:
            self.write(self.t("terminal.staff_help"))

    async def _staff_list(self, open_only: bool) -> None:
        rows = await self.desk.listed(open_only=open_only)
        if not rows:
            self.write(self.t("terminal.staff_empty"))
            return
        for app in rows:
            account = app.account_code + (f" / {app.metering_point_code}" if app.metering_point_code else "")
            self.write(
                self.t(
                    "terminal.staff_line",
                    number=app.number,
                    status=Msg(f"status.{app.status}"),
                    date=as_utc(app.created_at),
                    account=account,
                    reason=Msg(f"reason.{app.reason}"),
                )
            )

    async def _staff_show(self, ref: str) -> None:
        card = await self.desk.card(ref)
        if card is None:
            self.write(self.t("status.error_not_found"))
            return
        app = card.application
        account = app.account_code + (f" / {app.metering_point_code}" if app.metering_point_code else "")
        extra = ", ".join(display_phone(p) for p in app.extra_phones) or "—"
        self.write(
            self.t(
                "terminal.staff_card",
                number=app.number,
                status=Msg(f"status.{app.status}"),
                account=account,
                address=app.address or "—",
                region=app.region or "—",
                reason=Msg(f"reason.{app.reason}"),
                description=app.description,
                mobile=display_phone(app.mobile),
                extra=extra,
                email=app.email or "—",
            )
        )
        for change in card.history:
            self.write(
                self.t(
                    "terminal.staff_history",
                    date=as_utc(change.created_at),
                    status=Msg(f"status.{change.new_status}"),
                    actor=change.actor,
                    note=change.note or "",
                )
            )

    async def _staff_status(self, ref: str, status: Status, note: str | None) -> None:
        try:
            app = await self.desk.set_status(ref, status, STAFF_ACTOR, note)
        except IllegalTransition as exc:
            self.write(translate(refusal(exc), self.lang))
            return
        self.write(self.t("terminal.staff_changed", number=app.number, status=Msg(f"status.{app.status}")))


async def stdin_reader() -> str:
    return await asyncio.to_thread(sys.stdin.readline)
