"""Department staff groups in Telegram: cards, their buttons, result prompts, two-way messages, commands.

Updates from a staff chat come through the same polling or webhook as the subscribers'. Each is
handled once (the processed-update record) in one transaction, and what must reach someone else (the
subscriber's message, the card's new look) is queued in the outbox in that same transaction. Direct
answers to the person who acted (a toast, a prompt, a command's answer) are sent after the commit.

Messages go out as plain text: nothing a subscriber wrote can be read as markup in a staff chat.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aiogram.exceptions import ClientDecodeError
from aiogram.methods import (
    AnswerCallbackQuery,
    CreateForumTopic,
    EditMessageText,
    GetChat,
    GetChatAdministrators,
    SendLocation,
    SendMessage,
    SendPhoto,
    SetMessageReaction,
    SetMyCommands,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReactionTypeEmoji,
    ReplyParameters,
    Update,
    User,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.telegram import CHANNEL
from bot.channels.telegram.client import TelegramClient
from bot.channels.telegram.render import split_text
from bot.channels.whatsapp.mapping import MEDIA_PREFIX
from bot.core.service import Clock, payload_msg
from bot.notify.outbox import Permanent, Temporary
from bot.staff.departments import Department
from bot.staff.policy import StaffPolicy
from dialogs import lifecycle
from dialogs.lifecycle import IllegalTransition, Role, Status
from dialogs.validate import display_phone
from locales import Msg, translate
from storage import applications, conversations, outbox, staff
from storage.applications import account_label
from storage.db import Database, as_utc
from storage.models import Application, Notification, Person, StaffThread

log = logging.getLogger(__name__)
Media = Callable[[str], Awaitable[tuple[bytes, str]]]
CALLBACK_RE = re.compile(r"^s:(\d{1,12}):(take|work|done|reject|msg)$")
COMMAND_RE = re.compile(r"^/(open|find|stats)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL | re.IGNORECASE)
TARGET = {"work": Status.IN_PROGRESS, "done": Status.COMPLETED, "reject": Status.REJECTED}
RELAY_MAX = 3500
CAPTION_LIMIT = 1024
ADMINS_FOR = 300.0  # seconds a chat's administrator list is trusted
CHANNEL_NAMES = {"telegram": "Telegram", "whatsapp": "WhatsApp", "terminal": "terminal"}


def status_msg(status: str) -> Msg:
    return Msg(f"status.{status}")


def refusal(exc: IllegalTransition) -> Msg:
    """The lifecycle's explanation, with status names in words."""
    params: dict[str, Any] = {
        k: status_msg(v) if k in ("current", "new", "status") else v for k, v in exc.params.items()
    }
    return Msg(exc.key, params)


def person_name(user: User) -> str:
    return " ".join(part for part in (user.first_name, user.last_name) if part)[:128] or str(user.id)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A question to one staff member, answered by replying to it."""

    application_id: int
    number: str
    action: str  # done | reject | msg
    user: User


@dataclass(slots=True)
class Reaction:
    """What to send after the commit: a toast, a prompt, an answer in the chat, a 👍 on a message."""

    toast: Msg | None = None
    alert: bool = False
    prompt: Prompt | None = None
    answer: list[Msg] | None = None
    thumbs_up: bool = False


class StaffChat:
    def __init__(
        self,
        client: TelegramClient,
        db: Database,
        clock: Clock,
        policy: StaffPolicy,
        wake: Callable[[], None] = lambda: None,
        media: Media | None = None,
    ):
        self.client = client
        self.policy = policy
        self.wake = wake  # the outbox worker: something was queued
        self.media = media  # reads a photo another channel holds (WhatsApp's "wa:<media id>")
        self.db = db
        self.clock = clock
        self._forum: dict[int, bool] = {}
        self._admins: dict[int, tuple[float, frozenset[int]]] = {}

    async def set_commands(self) -> None:
        """The staff commands in each staff chat's menu, in its language."""
        for chat_id in sorted(self.policy.departments.chats):
            department = self.policy.departments.by_chat(chat_id)
            lang = department.lang if department is not None else "az"
            commands = [
                BotCommand(command=name, description=translate(Msg(f"staff.command_{name}"), lang))
                for name in ("open", "find", "stats")
            ]
            try:
                await self.client.request(
                    chat_id,
                    SetMyCommands(commands=commands, scope=BotCommandScopeChat(chat_id=chat_id)),
                    message=False,
                )
            except (Temporary, Permanent) as exc:  # the bot is not in that group yet: say so, go on
                log.warning("the staff commands could not be set in chat %s: %s", chat_id, exc)

    # ---- updates in --------------------------------------------------------------------------------

    def owns(self, update: Update) -> int | None:
        """The staff chat an update comes from, or None when it is not from one."""
        chat = None
        if update.message is not None:
            chat = update.message.chat
        elif update.callback_query is not None and update.callback_query.message is not None:
            chat = update.callback_query.message.chat
        if chat is not None and chat.id in self.policy.departments.chats:
            return chat.id
        return None

    async def handle(self, update: Update) -> None:
        if update.callback_query is not None:
            await self._press(update.update_id, update.callback_query)
        elif update.message is not None:
            await self._message(update.update_id, update.message)

    async def _may_act(self, department: Department, chat_id: int, user_id: int) -> bool:
        if user_id in department.staff:
            return True
        if not department.admins_may_act:
            return False
        cached = self._admins.get(chat_id)
        if cached is None or time.monotonic() - cached[0] > ADMINS_FOR:
            try:
                admins = await self.client.request(
                    chat_id, GetChatAdministrators(chat_id=chat_id), message=False
                )
            except (Temporary, Permanent, ClientDecodeError) as exc:
                log.warning("the administrators of a staff chat could not be read: %s", exc)
                return False
            cached = (time.monotonic(), frozenset(member.user.id for member in admins))
            self._admins[chat_id] = cached
        return user_id in cached[1]

    async def _press(self, update_id: int, query: CallbackQuery) -> None:
        assert query.message is not None
        chat_id = query.message.chat.id
        department = self.policy.departments.by_chat(chat_id)
        assert department is not None
        allowed = await self._may_act(department, chat_id, query.from_user.id)
        now = self.clock()
        async with self.db.transaction() as session:
            if not await conversations.mark_processed(session, CHANNEL, str(update_id), now):
                reaction = Reaction()
            else:
                reaction = await self._on_press(session, department, chat_id, query, allowed, now)
        self.wake()
        try:
            text = translate(reaction.toast, department.lang)[:200] if reaction.toast else None
            await self.client.request(
                chat_id,
                AnswerCallbackQuery(callback_query_id=query.id, text=text, show_alert=reaction.alert),
                message=False,
            )
        except (Temporary, Permanent):
            pass  # too old to answer: nothing spins any more
        if reaction.prompt is not None:
            await self._send_prompt(chat_id, department, reaction.prompt)

    async def _on_press(
        self,
        session: AsyncSession,
        department: Department,
        chat_id: int,
        query: CallbackQuery,
        allowed: bool,
        now: datetime,
    ) -> Reaction:
        user = query.from_user
        name = person_name(user)
        parsed = CALLBACK_RE.fullmatch(query.data or "")
        record = _auditor(session, chat_id, user, now)

        if parsed is None:
            record("press", False, None, "not a button of ours")
            return Reaction(Msg("staff.stale_button"), alert=True)
        application_id, action = int(parsed.group(1)), parsed.group(2)
        application = await staff.get_for_update(session, application_id)
        if application is None:
            record(action, False, None, f"no application {application_id}")
            return Reaction(Msg("status.error_not_found"), alert=True)
        if application.department != department.key:
            record(action, False, application_id, f"belongs to department {application.department}")
            return Reaction(Msg("staff.refused_department"), alert=True)
        if not allowed:
            record(action, False, application_id, "not on the department's staff")
            return Reaction(Msg("staff.refused_not_staff"), alert=True)
        if action == "take":
            if application.status not in staff.OPEN_VALUES:
                record("take", False, application_id, f"already {application.status}")
                return Reaction(
                    Msg("staff.take_closed", {"status": status_msg(application.status)}), alert=True
                )
            if application.assignee_id not in (None, user.id):
                record("take", True, application_id, f"taken over from {application.assignee_name}")
            staff.assign(application, user.id, name, now)
            await staff.to_thread(session, application_id, "card_refresh", {}, now)
            record("take", True, application_id)
            return Reaction(Msg("staff.toast_taken", {"number": application.number}))
        if action == "msg":
            record("ask_message", True, application_id)
            return Reaction(
                Msg("staff.toast_write"), prompt=Prompt(application_id, application.number, action, user)
            )
        target = TARGET[action]
        if target not in lifecycle.TRANSITIONS[Status(application.status)]:
            exc = IllegalTransition("status.error_transition", current=application.status, new=target.value)
            record(action, False, application_id, f"{application.status} → {target.value}")
            return Reaction(refusal(exc), alert=True)
        if target in lifecycle.NEEDS_RESULT:  # asked for the result first; the status changes with it
            record(f"ask_{target.value}", True, application_id)
            return Reaction(
                Msg("staff.toast_write"), prompt=Prompt(application_id, application.number, action, user)
            )
        if application.assignee_id is None:
            staff.assign(application, user.id, name, now)
        await applications.change_status(
            session, application_id, target, actor=f"staff:{user.id}", role=Role.STAFF, note=None, now=now
        )
        record(target.value, True, application_id)
        return Reaction(
            Msg("staff.toast_status", {"number": application.number, "status": status_msg(target)})
        )

    async def _send_prompt(self, chat_id: int, department: Department, prompt: Prompt) -> None:
        name = person_name(prompt.user)
        if prompt.action == "msg":
            text = translate(
                Msg("staff.ask_message", {"name": name, "number": prompt.number}), department.lang
            )
        else:
            status = status_msg(TARGET[prompt.action])
            text = translate(
                Msg("staff.ask_result", {"name": name, "number": prompt.number, "status": status}),
                department.lang,
            )
        # The name leads the text, as a mention: `selective` then shows the reply field to that person only.
        mention = MessageEntity(type="text_mention", offset=0, length=_utf16_len(name), user=prompt.user)
        async with self.db.transaction() as session:
            found = await staff.thread(session, prompt.application_id)
        try:
            sent = await self.client.request(
                chat_id,
                SendMessage(
                    chat_id=chat_id,
                    text=text,
                    entities=[mention] if text.startswith(name) else None,
                    reply_markup=ForceReply(force_reply=True, selective=True),
                    **_in_thread(found),
                ),
            )
        except (Temporary, Permanent) as exc:
            log.warning("a staff prompt could not be sent: %s", exc)
            return
        async with self.db.transaction() as session:
            await staff.link(
                session,
                CHANNEL,
                chat_id,
                sent.message_id,
                prompt.application_id,
                "prompt",
                self.clock(),
                action=prompt.action,
                user_id=prompt.user.id,
            )

    async def _message(self, update_id: int, message: Message) -> None:
        chat_id = message.chat.id
        department = self.policy.departments.by_chat(chat_id)
        assert department is not None
        user = message.from_user
        text = message.text or message.caption or ""
        command = COMMAND_RE.match(text.strip()) if message.text else None
        topic = message.message_thread_id if message.is_topic_message else None
        replied = message.reply_to_message
        if replied is not None and topic is not None and replied.message_id == topic:
            replied = None  # in a forum, every message "replies" to the topic's first message
        has_content = (
            bool(text) or bool(message.photo) or message.sticker is not None or message.document is not None
        )
        relevant = command is not None or (has_content and (replied is not None or topic is not None))
        allowed = (
            relevant
            and user is not None
            and not user.is_bot
            and await self._may_act(department, chat_id, user.id)
        )
        now = self.clock()
        reaction = Reaction()
        async with self.db.transaction() as session:
            if not await conversations.mark_processed(session, CHANNEL, str(update_id), now):
                return
            if relevant and user is not None and not user.is_bot:
                reaction = await self._on_message(
                    session, department, message, user, command, replied, topic, allowed, now
                )
        self.wake()
        if reaction.answer:
            text_out = "\n".join(translate(m, department.lang) for m in reaction.answer)
            for piece in split_text(text_out):
                try:
                    await self.client.request(
                        chat_id,
                        SendMessage(
                            chat_id=chat_id,
                            text=piece,
                            message_thread_id=topic,
                            reply_parameters=ReplyParameters(
                                message_id=message.message_id, allow_sending_without_reply=True
                            ),
                            link_preview_options=LinkPreviewOptions(is_disabled=True),
                        ),
                    )
                except (Temporary, Permanent) as exc:
                    log.warning("an answer in a staff chat could not be sent: %s", exc)
        if reaction.thumbs_up:
            try:
                await self.client.request(
                    chat_id,
                    SetMessageReaction(
                        chat_id=chat_id,
                        message_id=message.message_id,
                        reaction=[ReactionTypeEmoji(emoji="👍")],
                    ),
                    message=False,
                )
            except (Temporary, Permanent):
                pass  # only a courtesy: the message is queued either way

    async def _on_message(
        self,
        session: AsyncSession,
        department: Department,
        message: Message,
        user: User,
        command: re.Match[str] | None,
        replied: Message | None,
        topic: int | None,
        allowed: bool,
        now: datetime,
    ) -> Reaction:
        chat_id = message.chat.id
        name = person_name(user)
        record = _auditor(session, chat_id, user, now)

        if command is not None:
            if not allowed:
                record(f"/{command.group(1).lower()}", False, None, "not on the department's staff")
                return Reaction(answer=[Msg("staff.refused_not_staff")])
            record(f"/{command.group(1).lower()}", True, None)
            return Reaction(answer=await self._command(session, department, command, now))
        linked = None
        if replied is not None:
            linked = await staff.linked(session, CHANNEL, chat_id, replied.message_id)
        application_id = linked.application_id if linked is not None else None
        if application_id is None and topic is not None:
            found = await staff.thread_by_topic(session, chat_id, topic)
            application_id = found.application_id if found is not None else None
        if application_id is None or (linked is not None and linked.kind == "note" and topic is None):
            return Reaction()  # staff talking among themselves, or answering the bot's own note
        if not allowed:
            record("message", False, application_id, "not on the department's staff")
            return Reaction(answer=[Msg("staff.refused_not_staff")])
        application = await staff.get_for_update(session, application_id)
        if application is None or application.department != department.key:
            record("message", False, application_id, "another department's application")
            return Reaction(answer=[Msg("staff.refused_department")])
        text = (message.text or message.caption or "").strip()
        if linked is not None and linked.kind == "prompt" and linked.action in ("done", "reject"):
            if linked.user_id != user.id:
                return Reaction(answer=[Msg("staff.prompt_other")])
            target = TARGET[linked.action]
            try:
                if application.assignee_id is None:
                    staff.assign(application, user.id, name, now)
                await applications.change_status(
                    session,
                    application_id,
                    target,
                    actor=f"staff:{user.id}",
                    role=Role.STAFF,
                    note=text,
                    now=now,
                )
            except IllegalTransition as exc:
                record(target.value, False, application_id, exc.key)
                return Reaction(answer=[refusal(exc)])
            record(target.value, True, application_id, f"result of {len(text)} characters")
            note = {
                "key": "staff.note_status",
                "params": {
                    "icon": "✅" if target == Status.COMPLETED else "❌",
                    "name": name,
                    "number": application.number,
                    "status": {"$msg": f"status.{target}"},
                },
            }
            await staff.to_thread(session, application_id, "note", note, now)
            return Reaction(thumbs_up=True)
        return self._relay(session, department, application, message, text, record, now)

    def _relay(
        self,
        session: AsyncSession,
        department: Department,
        application: Application,
        message: Message,
        text: str,
        record: Record,
        now: datetime,
    ) -> Reaction:
        """A staff member's message to the subscriber, signed with the department's name."""
        assert application.id is not None
        photo = message.photo[-1].file_id if message.photo else None
        if not text and photo is None:
            return Reaction(answer=[Msg("staff.relay_unsupported")])
        if len(text) > RELAY_MAX:
            return Reaction(answer=[Msg("staff.relay_long", {"max": RELAY_MAX, "length": len(text)})])
        if photo is not None and application.channel not in (CHANNEL, "whatsapp"):
            return Reaction(answer=[Msg("staff.relay_photo_channel")])  # the terminal shows no photos
        outbox.enqueue(
            session,
            channel=application.channel,
            user_key=application.user_key,
            lang=application.lang,
            kind="staff_message",
            payload={
                "department": department.key,
                "number": application.number,
                "text": text,
                "photo": photo,
            },
            now=now,
            application_id=application.id,
        )
        record("message", True, application.id, f"{len(text)} characters" + (" and a photo" if photo else ""))
        return Reaction(thumbs_up=True)

    async def _command(
        self, session: AsyncSession, department: Department, command: re.Match[str], now: datetime
    ) -> list[Msg]:
        name, arg = command.group(1).lower(), (command.group(2) or "").strip()
        policy = self.policy
        if name == "open":
            rows = await staff.open_applications(session, department.key)
            if not rows:
                return [Msg("staff.open_empty")]
            lines = [Msg("staff.open_title", {"count": len(rows)})]
            for app in rows:
                late = staff.overdue(app, now, policy.take_within, policy.done_within)
                lines.append(
                    Msg(
                        "staff.open_line",
                        {
                            "flag": "⏰ " if late else "",
                            "number": app.number,
                            "age": age(now - as_utc(app.created_at)),
                            "status": status_msg(app.status),
                            "assignee": app.assignee_name or "—",
                        },
                    )
                )
            return lines
        if name == "find":
            if not arg:
                return [Msg("staff.find_usage")]
            rows = await staff.find(session, arg[:64], department.key)
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
        stats = await staff.stats(session, department.key, now)
        lines = [Msg("staff.stats_title", {"department": department.name(department.lang)})]
        for status in Status:
            lines.append(
                Msg(
                    "staff.stats_line",
                    {"status": status_msg(status), "count": stats.by_status.get(status, 0)},
                )
            )
        for days, median, count in (
            (7, stats.median_7, stats.results_7),
            (30, stats.median_30, stats.results_30),
        ):
            lines.append(
                Msg(
                    "staff.stats_median",
                    {"days": days, "median": age(median) if median is not None else "—", "count": count},
                )
            )
        return lines

    # ---- the outbox's sender for staff chats -------------------------------------------------------

    async def deliver(self, notification: Notification) -> str | None:
        chat_id = int(notification.user_key)
        department = self.policy.departments.by_chat(chat_id)
        lang = department.lang if department is not None else "az"
        if notification.application_id is None:
            raise Permanent("a staff message without an application")
        async with self.db.transaction() as session:
            application = await session.get(Application, notification.application_id)
            thread = await staff.thread(session, notification.application_id)
            person = (
                await session.get(Person, application.person_id)
                if application and application.person_id
                else None
            )
            owed = await outbox.for_application(session, notification.application_id)
        if application is None or thread is None:
            raise Permanent("the application or its staff thread is gone")
        deliveries = delivery_summary(owed)
        if notification.kind == "card":
            return await self._post_card(application, thread, person, lang, deliveries)
        if notification.kind == "card_refresh":
            return await self._refresh_card(application, thread, person, lang, deliveries)
        if notification.kind == "photo":
            sent = await self.client.request(
                chat_id,
                SendPhoto(
                    chat_id=chat_id,
                    photo=await self._photo(notification.payload["photo"]),
                    **_in_thread(thread),
                ),
            )
            return await self._linked(chat_id, sent.message_id, application, "relay")
        if notification.kind == "location":
            latitude, longitude = notification.payload["latitude"], notification.payload["longitude"]
            sent = await self.client.request(
                chat_id,
                SendLocation(chat_id=chat_id, latitude=latitude, longitude=longitude, **_in_thread(thread)),
            )
            return await self._linked(chat_id, sent.message_id, application, "relay")
        if notification.kind in ("note", "relay"):
            return await self._post_note(notification, application, thread, lang)
        raise Permanent(f"unknown staff notification kind {notification.kind!r}")

    async def _post_card(
        self,
        application: Application,
        thread: StaffThread,
        person: Person | None,
        lang: str,
        deliveries: Sequence[tuple[str, str]] = (),
    ) -> str | None:
        chat_id = thread.chat_id
        if thread.card_message_id is not None:  # posted before a crash kept it from being marked sent
            return str(thread.card_message_id)
        if thread.topic_id is None and await self._is_forum(chat_id):
            reason = translate(Msg(f"reason.{application.reason}"), lang)
            try:
                topic = await self.client.request(
                    chat_id, CreateForumTopic(chat_id=chat_id, name=f"{application.number} · {reason}"[:128])
                )
            except Permanent as exc:  # no right to manage topics, or too many: the card goes all the same
                log.error("a forum topic could not be created (%s); posting as a reply thread", exc.reason)
                self._forum[chat_id] = False
            else:
                async with self.db.transaction() as session:
                    row = await session.get(StaffThread, application.id, with_for_update=True)
                    if row is not None:
                        row.topic_id = topic.message_thread_id
                thread.topic_id = topic.message_thread_id
        text, markup = self.card(application, person, lang, deliveries)
        sent = await self.client.request(
            chat_id,
            SendMessage(
                chat_id=chat_id,
                text=text,
                reply_markup=markup,
                message_thread_id=thread.topic_id,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            ),
        )
        async with self.db.transaction() as session:
            row = await session.get(StaffThread, application.id, with_for_update=True)
            if row is not None:
                row.card_message_id = sent.message_id
            assert application.id is not None
            await staff.link(session, CHANNEL, chat_id, sent.message_id, application.id, "card", self.clock())
        return str(sent.message_id)

    async def _refresh_card(
        self,
        application: Application,
        thread: StaffThread,
        person: Person | None,
        lang: str,
        deliveries: Sequence[tuple[str, str]] = (),
    ) -> str | None:
        if thread.card_message_id is None:
            return None  # the card is still queued, and will show the current state when it goes
        text, markup = self.card(application, person, lang, deliveries)
        try:
            await self.client.request(
                thread.chat_id,
                EditMessageText(
                    chat_id=thread.chat_id,
                    message_id=thread.card_message_id,
                    text=text,
                    reply_markup=markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                ),
            )
        except Permanent as exc:
            if "not modified" not in exc.reason:
                raise
        return str(thread.card_message_id)

    async def _post_note(
        self, notification: Notification, application: Application, thread: StaffThread, lang: str
    ) -> str | None:
        payload = notification.payload
        chat_id = thread.chat_id
        if notification.kind == "relay":  # from the subscriber
            head = translate(Msg("staff.from_subscriber", {"number": application.number}), lang)
            text = "\n".join(part for part in (head, str(payload.get("text") or "")) if part)
        else:
            text = translate(payload_msg(payload), lang)
        photo = payload.get("photo")
        kind = "relay" if notification.kind == "relay" else "note"
        if photo and len(text) <= CAPTION_LIMIT:
            sent = await self.client.request(
                chat_id,
                SendPhoto(
                    chat_id=chat_id, photo=await self._photo(photo), caption=text, **_in_thread(thread)
                ),
            )
            return await self._linked(chat_id, sent.message_id, application, kind)
        last = None
        for piece in split_text(text):
            sent = await self.client.request(
                chat_id,
                SendMessage(
                    chat_id=chat_id,
                    text=piece,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                    **_in_thread(thread),
                ),
            )
            last = await self._linked(chat_id, sent.message_id, application, kind)
        if photo:
            sent = await self.client.request(
                chat_id, SendPhoto(chat_id=chat_id, photo=await self._photo(photo), **_in_thread(thread))
            )
            last = await self._linked(chat_id, sent.message_id, application, kind)
        return last

    async def _photo(self, ref: object) -> str | BufferedInputFile:
        """A Telegram file id as it is; another channel's photo fetched and uploaded."""
        text = str(ref)
        if not text.startswith(MEDIA_PREFIX):
            return text
        if self.media is None:
            raise Permanent("a WhatsApp photo, and no WhatsApp channel to read it from")
        data, mime = await self.media(text.removeprefix(MEDIA_PREFIX))
        extension = {"image/png": "png", "image/webp": "webp"}.get(mime, "jpg")
        return BufferedInputFile(data, filename=f"photo.{extension}")

    async def _linked(self, chat_id: int, message_id: int, application: Application, kind: str) -> str:
        assert application.id is not None
        async with self.db.transaction() as session:
            await staff.link(session, CHANNEL, chat_id, message_id, application.id, kind, self.clock())
        return str(message_id)

    async def _is_forum(self, chat_id: int) -> bool:
        if chat_id not in self._forum:
            try:
                chat = await self.client.request(chat_id, GetChat(chat_id=chat_id), message=False)
                self._forum[chat_id] = bool(chat.is_forum)
            except (Permanent, ClientDecodeError) as exc:
                log.warning("a staff chat's kind could not be read (%s); posting without topics", exc)
                self._forum[chat_id] = False
        return self._forum[chat_id]

    def card(
        self,
        application: Application,
        person: Person | None,
        lang: str,
        deliveries: Sequence[tuple[str, str]] = (),
    ) -> tuple[str, InlineKeyboardMarkup]:
        """The card's text and buttons, as they are for the application's current state."""
        now = self.clock()
        policy = self.policy
        lines: list[Msg] = [Msg("staff.card_title", {"number": application.number})]
        lines.append(Msg(f"staff.card_kind_{application.kind}"))
        lines.append(Msg("staff.card_account", {"account": account_label(application)}))
        lines.append(
            Msg(
                "staff.card_address",
                {"address": application.address or "—", "region": application.region or "—"},
            )
        )
        lines.append(Msg("staff.card_reason", {"reason": Msg(f"reason.{application.reason}")}))
        lines.append(Msg("staff.card_description", {"text": application.description}))
        if person is not None:
            lines.append(Msg("staff.card_applicant", {"name": person.full_name}))
        phones = [display_phone(application.mobile)] + [display_phone(p) for p in application.extra_phones]
        lines.append(Msg("staff.card_phones", {"phones": ", ".join(phones)}))
        lines.append(Msg("staff.card_email", {"email": application.email or "—"}))
        if application.photo_ref or application.latitude is not None:
            lines.append(Msg("staff.card_attachments"))
        channel = CHANNEL_NAMES.get(application.channel, application.channel)
        lines.append(Msg("staff.card_channel", {"channel": channel, "date": as_utc(application.created_at)}))
        lines.append(Msg("staff.card_status", {"status": status_msg(application.status)}))
        lines.append(Msg("staff.card_assignee", {"name": application.assignee_name or "—"}))
        if application.updated_at and as_utc(application.updated_at) > as_utc(application.created_at):
            lines.append(Msg("staff.card_changed", {"date": as_utc(application.updated_at)}))
        if application.result:
            lines.append(Msg("staff.card_result", {"text": application.result}))
        if deliveries:
            told = " · ".join(
                f"{translate(Msg(f'staff.via_{via}'), lang)} {mark}" for via, mark in deliveries
            )
            lines.append(Msg("staff.card_told", {"deliveries": told}))
        if application.status in staff.OPEN_VALUES:
            due = staff.due_at(application, policy.done_within)
            late = staff.overdue(application, now, policy.take_within, policy.done_within)
            lines.append(Msg("staff.card_due_late" if late else "staff.card_due", {"date": due}))
        text = "\n".join(translate(line, lang) for line in lines)
        return split_text(text)[0], self._buttons(application, lang)

    def _buttons(self, application: Application, lang: str) -> InlineKeyboardMarkup:
        status = Status(application.status)
        actions: list[str] = []
        if status in lifecycle.OPEN:
            actions.append("take")
        actions += [a for a, target in TARGET.items() if target in lifecycle.TRANSITIONS[status]]
        actions.append("msg")
        rows = [
            [
                InlineKeyboardButton(
                    text=translate(Msg(f"staff.btn_{a}"), lang), callback_data=f"s:{application.id}:{a}"
                )
            ]
            for a in actions
        ]
        return InlineKeyboardMarkup(inline_keyboard=rows)


class Record(Protocol):
    def __call__(
        self, action: str, ok: bool, application_id: int | None, detail: str | None = None
    ) -> None: ...


def _auditor(session: AsyncSession, chat_id: int, user: User, now: datetime) -> Record:
    """Writes one staff action, allowed or refused, into the audit trail of this transaction."""

    def record(action: str, ok: bool, application_id: int | None, detail: str | None = None) -> None:
        staff.audit(
            session,
            chat_id=chat_id,
            user_id=user.id,
            user_name=person_name(user),
            action=action,
            allowed=ok,
            now=now,
            application_id=application_id,
            detail=detail,
        )

    return record


DELIVERY_MARKS = {"queued": "⏳", "sending": "⏳", "sent": "✓", "delivered": "✓✓", "failed": "✗"}
SUBSCRIBER_CHANNELS = {"telegram": "chat", "whatsapp": "chat", "sms": "sms", "email": "email"}


def delivery_summary(owed: Sequence[Notification]) -> list[tuple[str, str]]:
    """How the subscriber was told, for the card: the latest message of each way (chat, SMS, e-mail)."""
    latest: dict[str, Notification] = {}
    for row in owed:
        via = SUBSCRIBER_CHANNELS.get(row.channel)
        if via is not None:
            latest[via] = row
    return [
        (via, DELIVERY_MARKS.get(latest[via].state, "?")) for via in ("chat", "sms", "email") if via in latest
    ]


def _in_thread(thread: StaffThread | None) -> dict[str, Any]:
    """Where a message about the application goes: its forum topic, or as a reply to its card."""
    if thread is None:
        return {}
    if thread.topic_id is not None:
        return {"message_thread_id": thread.topic_id}
    if thread.card_message_id is not None:
        return {
            "reply_parameters": ReplyParameters(
                message_id=thread.card_message_id, allow_sending_without_reply=True
            )
        }
    return {}


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def age(delta: timedelta) -> Msg:
    hours = max(int(delta.total_seconds() // 3600), 0)
    if hours < 24:
        return Msg(
            "staff.age_hours", {"hours": hours, "minutes": max(int(delta.total_seconds() // 60) % 60, 0)}
        )
    return Msg("staff.age_days", {"days": hours // 24, "hours": hours % 24})


async def check_deadlines(db: Any, policy: StaffPolicy, now: datetime) -> int:
    """Flag each application past a deadline once, in its thread. Returns how many were flagged."""
    async with db.transaction() as session:
        flagged = await staff.flag_overdue(session, now, policy.take_within, policy.done_within)
        for application, which in flagged:
            assert application.id is not None
            if which == "take":
                hours = f"{policy.take_within.total_seconds() / 3600:g}"
                note = {"key": "staff.remind_take", "params": {"number": application.number, "hours": hours}}
            else:
                days = f"{policy.done_within.total_seconds() / 86400:g}"
                note = {"key": "staff.remind_done", "params": {"number": application.number, "days": days}}
            await staff.to_thread(session, application.id, "note", note, now)
    return len(flagged)
