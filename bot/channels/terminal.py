"""The terminal channel: the whole service in a console, as a subscriber and, after /staff, as staff.

Choices are numbered: type the number. The platform's buttons have stand-ins:
`/contact +994…` shares a contact, `/photo NAME` attaches a photo, `/location LAT LON` a location.

The SMS and e-mails the service sends are shown as they would arrive, in the words the gateway and
the mailer would get. Applications go to the demo's own department (`demo_policy`), which serves every
region; the terminal's staff view is its staff chat.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import stat
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from email.message import EmailMessage
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.departments import Department, Departments
from bot.core.links import ChatLink, LinkSigner, PublicLinks
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations, Handled
from bot.notify.mail import EmailSender
from bot.notify.outbox import Permanent, Sender, Temporary
from bot.notify.sms import SmsSender
from bot.staff.desk import StaffDesk, refusal
from bot.web.server import Route
from dialogs.events import Command, Contact, Event, Location, Photo, Pressed, Text
from dialogs.lifecycle import STAFF_STEPS, IllegalTransition, Status
from dialogs.ports import Subscriber
from dialogs.replies import Message, Request
from dialogs.validate import display_phone, mask_email, mask_phone
from locales import LANGUAGES, Msg, payload_msg, translate
from storage import applications, conversations, outbox
from storage.db import as_utc
from storage.models import Notification

CHANNEL = "terminal"
PHOTO_PREFIX = "terminal:"
STAFF_ACTOR = "staff:terminal"
STATUS_COMMANDS = {command: step.status for step in STAFF_STEPS for command in step.commands}
LOCAL_BASE_URL = "http://127.0.0.1:8080"  # the status page's address when none is given (PUBLIC_BASE_URL)
MAIL_FROM = "isiqbot@localhost"  # the From of the e-mails shown; nobody sees it
# The demo's department. The terminal has no staff chat: its staff view stands for one, and this id,
# which no Telegram group has, only fills the thread row that routing writes.
DEMO_KEY = "demo"
DEMO_CHAT_ID = -1
DEMO_NAMES = {"az": "Demo şöbəsi", "ru": "Демо-отдел", "en": "Demo department"}


class DemoDepartments(Departments):
    """One department, the demo's, serving every region."""

    def for_region(self, region: str | None) -> Department | None:
        return self.by_key(DEMO_KEY)


def demo_policy() -> StaffPolicy:
    """The terminal's staff policy: every application goes to the demo department, deadlines as usual."""
    department = Department(DEMO_KEY, DEMO_NAMES, DEMO_CHAT_ID, staff=frozenset(), regions=())
    return StaffPolicy(DemoDepartments([department], None))


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


def shown_sms(phone: str, text: str, lang: str) -> str:
    """An SMS as the terminal shows it: to whom (the number masked), then the text."""
    header = translate(Msg("terminal.sms", {"phone": mask_phone(phone)}), lang)
    return f"\n{header}\n{_indent(text)}"


def shown_email(message: EmailMessage, lang: str) -> str:
    """An e-mail as the terminal shows it: to whom (masked) and the subject, then the plain-text body."""
    params = {"address": mask_email(str(message["To"])), "subject": str(message["Subject"])}
    header = translate(Msg("terminal.email", params), lang)
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    return f"\n{header}\n{_indent(text)}"


def _indent(text: str) -> str:
    """Text set off from the conversation: indented, without runs of empty lines."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    kept = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]
    return "\n".join(f"  {line}" if line else "" for line in kept)


class TerminalSms:
    """In the terminal an SMS is shown, so the one-time code can be typed back."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    async def send(self, phone: str, text: Msg, lang: str) -> None:
        self.write(shown_sms(phone, translate(text, lang), lang))


class ShownSmsGateway:
    """The SMS gateway of the terminal: the SMS the gateway would get, shown (headed in `lang()`)."""

    def __init__(self, write: Callable[[str], None], lang: Callable[[], str]) -> None:
        self.write = write
        self.lang = lang

    async def send(self, phone: str, text: str, key: str | None = None) -> str | None:
        self.write(shown_sms(phone, text, self.lang()))
        return None


class ShownMailer:
    """The mailer of the terminal: the message the SMTP server would get, shown (headed in `lang()`)."""

    def __init__(self, write: Callable[[str], None], lang: Callable[[], str]) -> None:
        self.write = write
        self.lang = lang

    async def send(self, message: EmailMessage) -> str | None:
        self.write(shown_email(message, self.lang()))
        return None


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
        links: PublicLinks | None = None,
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
        links = links or PublicLinks(LinkSigner.ephemeral(), LOCAL_BASE_URL)
        # The outbox's own senders, so an SMS or e-mail reads here as it would arrive.
        gateway, mailer = ShownSmsGateway(self.write, self._lang), ShownMailer(self.write, self._lang)
        self.senders: dict[str, Sender] = {
            outbox.SMS: SmsSender(gateway, links),
            outbox.EMAIL: EmailSender(service.db, mailer, MAIL_FROM, links),
        }

    def _lang(self) -> str:
        return self.lang

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
        """Show the messages owed to this subscriber (staff status changes), then mark them sent.

        Then the SMS and e-mails queued for this subscriber's applications, as they would arrive.
        """
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
            owed = await self._owed_elsewhere(session)
        await self._deliver_elsewhere(owed)

    async def _owed_elsewhere(self, session: AsyncSession) -> list[Notification]:
        """The unsent SMS and e-mails of this subscriber's applications, and their demo staff chat's cards."""
        mine = await applications.list_for_subscriber(session, CHANNEL, self.subscriber.user_key, ())
        owed: list[Notification] = []
        for app in mine:
            if app.id is None:
                continue
            for row in await outbox.for_application(session, app.id):
                demo_chat = row.channel == outbox.STAFF and row.user_key == str(DEMO_CHAT_ID)
                if row.state == outbox.QUEUED and (row.channel in (outbox.SMS, outbox.EMAIL) or demo_chat):
                    owed.append(row)
        return sorted(owed, key=lambda row: row.id or 0)

    async def _deliver_elsewhere(self, owed: Sequence[Notification]) -> None:
        """Show each SMS and e-mail with the outbox's senders, then mark it sent (failed if it cannot be).

        The demo department's cards are sent too: the staff view, where staff see every application.
        """
        failed: dict[int, str] = {}
        for row in owed:
            sender = self.senders.get(row.channel)
            try:
                if sender is not None:
                    await sender.deliver(row)
            except (Permanent, Temporary) as exc:
                failed[row.id or 0] = exc.reason
        if not owed:
            return
        now = self.service.clock()
        async with self.service.db.transaction() as session:
            sent = [row.id for row in owed if row.id is not None and row.id not in failed]
            await conversations.mark_sent(session, sent, now)
            for row_id, reason in failed.items():
                await outbox.mark_failed(session, row_id, reason, now)

    # ---- the staff view ------------------------------------------------------------------------

    async def _staff(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError:  # "No closing quotation", or a lone backslash at the end
            self.write(self.t("terminal.unterminated_quote"))
            return
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
                description=app.description or "—",
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


class StdinLines:
    """Lines of standard input for `Terminal`, read without a thread stuck in `readline`.

    Ctrl-C cancels the chat while it waits here, and the process ends at once: on a terminal or a
    pipe the event loop is told when a line is there (`add_reader`); a regular file never makes a read
    wait. Where the loop cannot watch the input, a daemon thread reads it, which does not hold up
    the exit. Bytes that are not UTF-8 become "�"; "" is the end of input (Ctrl-D), as `readline` says.
    """

    CHUNK = 65536

    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.ended = False
        self.watchable: bool | None = None  # None until the first read: may the loop watch the input?

    async def __call__(self) -> str:
        while True:
            end = self.text.find("\n")
            if end >= 0:
                line, self.text = self.text[: end + 1], self.text[end + 1 :]
                return line
            if self.ended:
                line, self.text = self.text, ""
                return line
            chunk = await self._read()
            self.text += self.decoder.decode(chunk, final=not chunk)
            self.ended = not chunk

    async def _read(self) -> bytes:
        if stat.S_ISREG(os.fstat(self.fd).st_mode):
            return self._read_now()
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[bytes] = loop.create_future()
        if self.watchable is not False:
            try:
                loop.add_reader(self.fd, self._when_ready, ready)
                self.watchable = True
            except (OSError, NotImplementedError, ValueError):  # a loop or a file it cannot watch
                self.watchable = False
        if not self.watchable:
            threading.Thread(target=self._in_thread, args=(loop, ready), name="stdin", daemon=True).start()
        try:
            return await ready
        finally:
            if self.watchable:
                loop.remove_reader(self.fd)

    def _read_now(self) -> bytes:
        try:
            return os.read(self.fd, self.CHUNK)
        except BlockingIOError:
            raise
        except OSError:  # the terminal went away (EIO): that is the end of input
            return b""

    def _when_ready(self, ready: asyncio.Future[bytes]) -> None:
        if ready.done():
            return
        with contextlib.suppress(BlockingIOError):  # woken with nothing to read after all: wait on
            ready.set_result(self._read_now())

    def _in_thread(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[bytes]) -> None:
        while True:
            try:
                data = self._read_now()
                break
            except BlockingIOError:  # input set non-blocking by someone else: look again soon
                time.sleep(0.05)
        with contextlib.suppress(RuntimeError):  # the loop is closed: the chat has ended
            loop.call_soon_threadsafe(_give, ready, data)


def _give(ready: asyncio.Future[bytes], data: bytes) -> None:
    if not ready.done():  # not cancelled (Ctrl-C) in the meantime
        ready.set_result(data)
