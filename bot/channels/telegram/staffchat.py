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
from datetime import datetime
from typing import Any

from aiogram.exceptions import ClientDecodeError
from aiogram.methods import (
    AnswerCallbackQuery,
    CreateForumTopic,
    EditMessageCaption,
    EditMessageText,
    GetChat,
    GetChatAdministrators,
    SendDocument,
    SendLocation,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SendVoice,
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
    InputMediaPhoto,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReactionTypeEmoji,
    ReplyParameters,
    Update,
    User,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.telegram import CHANNEL, holds
from bot.channels.telegram.client import TelegramClient
from bot.channels.telegram.mapping import file_of
from bot.channels.telegram.render import split_text
from bot.core.clock import Clock
from bot.core.context import bind
from bot.core.departments import Department
from bot.notify.outbox import Permanent, Temporary
from bot.staff.desk import (
    ACTIONS,
    COMMANDS,
    REPLY,
    TO,
    Actor,
    Offer,
    Prompt,
    Reaction,
    StaffDesk,
    actions,
    card_visit,
    delivery_summary,
)
from dialogs.attachments import MAX_BYTES, MAX_MB
from locales import Msg, payload_msg, translate
from storage import conversations, outbox, staff
from storage.db import Database
from storage.models import Application, LinkedMessage, Notification, Person, StaffThread

log = logging.getLogger(__name__)
Media = Callable[[str], Awaitable[tuple[bytes, str]]]
CALLBACK_RE = re.compile(rf"^s:(\d{{1,12}}):({'|'.join(ACTIONS)}|(?:{TO}|{REPLY})[a-z0-9_-]{{1,32}})$")
COMMAND_RE = re.compile(rf"^/({'|'.join(COMMANDS)})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL | re.IGNORECASE)
CAPTION_LIMIT = 1024
PHOTO_CARD = "card_photo"  # a card posted as its application's photo: edited as a caption
ADMINS_FOR = 300.0  # seconds a chat's administrator list is trusted


def person_name(user: User) -> str:
    return " ".join(part for part in (user.first_name, user.last_name) if part)[:128] or str(user.id)


def actor(user: User, chat_id: int) -> Actor:
    return Actor(user.id, person_name(user), chat_id)


class StaffChat:
    def __init__(
        self,
        client: TelegramClient,
        db: Database,
        clock: Clock,
        desk: StaffDesk,
        wake: Callable[[], None] = lambda: None,
        media: Media | None = None,
    ):
        self.client = client
        self.desk = desk
        self.policy = desk.policy
        self.wake = wake  # the outbox worker: something was queued
        self.media = media  # reads a photo another channel keeps (`Channels.media`)
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
                for name in COMMANDS
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
        parsed = CALLBACK_RE.fullmatch(query.data or "")
        button = (int(parsed.group(1)), parsed.group(2)) if parsed is not None else None
        now = self.clock()
        async with self.db.transaction() as session:
            if not await conversations.mark_processed(session, CHANNEL, str(update_id), now):
                reaction = Reaction()
            else:
                who = actor(query.from_user, chat_id)
                reaction = await self.desk.press(session, department, who, button, allowed, now)
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
            await self._send_prompt(chat_id, department, reaction.prompt, query.from_user)
        if reaction.offer is not None:
            await self._send_offer(chat_id, department, reaction.offer)

    async def _send_offer(self, chat_id: int, department: Department, offer: Offer) -> None:
        """The choices (departments to move to, canned replies), one button each, in the thread."""
        rows = [
            [InlineKeyboardButton(text=label, callback_data=f"s:{offer.application_id}:{action}")]
            for action, label in offer.choices
        ]
        async with self.db.transaction() as session:
            found = await staff.thread(session, offer.application_id)
        try:
            await self.client.request(
                chat_id,
                SendMessage(
                    chat_id=chat_id,
                    text=translate(offer.question, department.lang),
                    reply_markup=InlineKeyboardMarkup(inline_keyboard=rows),
                    **_in_thread(found),
                ),
            )
        except (Temporary, Permanent) as exc:
            log.warning("a choice for staff could not be offered: %s", exc)

    async def _send_prompt(self, chat_id: int, department: Department, prompt: Prompt, user: User) -> None:
        name = prompt.actor.name
        text = translate(prompt.text(), department.lang)
        # The name leads the text, as a mention: `selective` then shows the reply field to that person only.
        mention = MessageEntity(type="text_mention", offset=0, length=_utf16_len(name), user=user)
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
                user_id=prompt.actor.id,
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
            bool(text)
            or bool(message.photo)
            or message.sticker is not None
            or message.document is not None
            or message.voice is not None
            or message.audio is not None
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
        await self._react(message, topic, department.lang, reaction)

    async def _react(self, message: Message, topic: int | None, lang: str, reaction: Reaction) -> None:
        """After the commit: the desk's answer as a reply to the message, and a 👍 on it."""
        chat_id = message.chat.id
        text = "\n".join(translate(m, lang) for m in reaction.answer or [])
        for piece in split_text(text) if text else []:
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
                thumbs_up = ReactionTypeEmoji(emoji="👍")
                react = SetMessageReaction(
                    chat_id=chat_id, message_id=message.message_id, reaction=[thumbs_up]
                )
                await self.client.request(chat_id, react, message=False)
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
        """A command for the desk, or a message about the application it replies to (or whose topic
        it is in); staff talking among themselves is left alone."""
        chat_id = message.chat.id
        who = actor(user, chat_id)
        if command is not None:
            name, arg = command.group(1).lower(), command.group(2) or ""
            return await self.desk.command(session, department, who, name, arg, allowed, now)
        linked = None
        if replied is not None:
            linked = await staff.linked(session, CHANNEL, chat_id, replied.message_id)
        application_id = linked.application_id if linked is not None else None
        if application_id is None and topic is not None:
            found = await staff.thread_by_topic(session, chat_id, topic)
            application_id = found.application_id if found is not None else None
        if application_id is None or (linked is not None and linked.kind == "note" and topic is None):
            return Reaction()  # staff talking among themselves, or answering the bot's own note
        prompt = (
            (linked.action or "", linked.user_id) if linked is not None and linked.kind == "prompt" else None
        )
        photo = message.photo[-1].file_id if message.photo else None
        content = (message.text or message.caption or "", photo, file_of(message))
        return await self.desk.answer(session, department, who, application_id, prompt, content, allowed, now)

    # ---- the outbox's sender for staff chats -------------------------------------------------------

    async def deliver(self, notification: Notification) -> str | None:
        chat_id = int(notification.user_key)
        department = self.policy.departments.by_chat(chat_id)
        lang = department.lang if department is not None else "az"
        if notification.application_id is None:
            raise Permanent("a staff message without an application")
        if notification.kind == staff.MOVED:
            return await self._close_moved_card(notification, lang)
        async with self.db.transaction() as session:
            application = await session.get(Application, notification.application_id)
            thread = await staff.thread(session, notification.application_id)
            person = (
                await session.get(Person, application.person_id)
                if application and application.person_id
                else None
            )
            owed = await outbox.for_application(session, notification.application_id)
            is_photo = thread is not None and await _card_is_photo(session, thread)
            visit = await card_visit(session, notification.application_id)
        if application is None or thread is None:
            raise Permanent("the application or its staff thread is gone")
        bind(application=application.number)  # on the outbox worker's lines about this message
        card = _Card(application, thread, person, lang, delivery_summary(owed), is_photo, visit)
        if notification.kind == "card":
            return await self._post_card(card)
        if notification.kind == "card_refresh":
            return await self._refresh_card(card)
        if notification.kind == "photo":
            if card.is_photo:  # the card went as this photo, with the card as its caption
                return str(thread.card_message_id)
            sent = await self.client.request(
                chat_id,
                SendPhoto(
                    chat_id=chat_id,
                    photo=await self._photo(notification.payload["photo"]),
                    **_in_thread(thread),
                ),
            )
            return await self._linked(chat_id, sent.message_id, application, "relay")
        if notification.kind == "album":
            photos = [str(p) for p in notification.payload["photos"]]
            if card.is_photo and photos[:1] == [application.photo_ref]:  # the first is the card itself
                photos = photos[1:]
            if not photos:
                return str(thread.card_message_id)
            return await self._album(application, thread, photos)
        if notification.kind in ("voice", "document"):
            return await self._attachment(application, thread, notification.kind, notification.payload, lang)
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

    async def _post_card(self, card: _Card) -> str | None:
        application, thread, lang = card.application, card.thread, card.lang
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
        text, markup = self.card(application, card.person, lang, card.deliveries, card.visit)
        # One group message for an application where it fits: the photo, with the card as its caption
        # (a group may be sent 20 messages a minute). A longer card goes as text, the photo after it;
        # so does a card whose photo cannot be had or is refused: the card itself must reach staff.
        sent = None
        if application.photo_ref and len(text) <= CAPTION_LIMIT:
            try:
                photo = await self._photo(application.photo_ref)
                sent = await self.client.request(
                    chat_id,
                    SendPhoto(
                        chat_id=chat_id,
                        photo=photo,
                        caption=text,
                        reply_markup=markup,
                        message_thread_id=thread.topic_id,
                    ),
                )
            except Permanent as exc:
                log.warning("a card's photo could not be shown (%s); the card goes as text", exc.reason)
        as_photo = sent is not None
        if sent is None:
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
        kind = PHOTO_CARD if as_photo else "card"
        async with self.db.transaction() as session:
            row = await session.get(StaffThread, application.id, with_for_update=True)
            if row is not None:
                row.card_message_id = sent.message_id
            assert application.id is not None
            await staff.link(session, CHANNEL, chat_id, sent.message_id, application.id, kind, self.clock())
        return str(sent.message_id)

    async def _close_moved_card(self, notification: Notification, lang: str) -> str | None:
        """The card left behind when its application moved to another department: no buttons any more,
        and a last line saying where it went (the card itself now lives in the other chat)."""
        chat_id, message_id = int(notification.user_key), notification.payload.get("message_id")
        if message_id is None:
            return None  # its card was never posted here: nothing to close
        assert notification.application_id is not None
        async with self.db.transaction() as session:
            application = await session.get(Application, notification.application_id)
            person = (
                await session.get(Person, application.person_id)
                if application and application.person_id
                else None
            )
            linked = await staff.linked(session, CHANNEL, chat_id, int(message_id))
        if application is None:
            raise Permanent("the application is gone")
        card = self.desk.card_text(application, person, lang)
        line = translate(payload_msg(notification.payload), lang)
        if len(card) + len(line) + 2 > CAPTION_LIMIT:  # the line that says where it went is kept whole
            card = card[: max(CAPTION_LIMIT - len(line) - 3, 0)] + "…"
        text = card + "\n\n" + line
        as_photo = linked is not None and linked.kind == PHOTO_CARD
        closed = InlineKeyboardMarkup(inline_keyboard=[])
        shown = text if as_photo else split_text(text)[0]
        await self._edit_card(chat_id, int(message_id), shown, closed, as_photo, gone_is_fine=True)
        return str(message_id)

    async def _refresh_card(self, card: _Card) -> str | None:
        thread = card.thread
        if thread.card_message_id is None:
            return None  # the card is still queued, and will show the current state when it goes
        text, markup = self.card(card.application, card.person, card.lang, card.deliveries, card.visit)
        if card.is_photo and len(text) > CAPTION_LIMIT:  # grown past a caption: the description gives way
            text = self._caption(card)
        await self._edit_card(thread.chat_id, thread.card_message_id, text, markup, card.is_photo)
        return str(thread.card_message_id)

    async def _edit_card(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        markup: InlineKeyboardMarkup,
        as_photo: bool,
        gone_is_fine: bool = False,
    ) -> None:
        """Edit a card in place: its caption when it was posted as its photo, else its text. An edit
        that changes nothing is fine; so is a card already deleted, when `gone_is_fine`."""
        edit: EditMessageText | EditMessageCaption = (
            EditMessageCaption(chat_id=chat_id, message_id=message_id, caption=text, reply_markup=markup)
            if as_photo
            else EditMessageText(
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                reply_markup=markup,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        try:
            await self.client.request(chat_id, edit)
        except Permanent as exc:
            if "not modified" not in exc.reason and not (gone_is_fine and "not found" in exc.reason):
                raise

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
        attachment = payload.get("attachment")
        if isinstance(attachment, dict) and attachment.get("kind") in ("voice", "document"):
            last = await self._attachment(
                application, thread, str(attachment["kind"]), attachment, lang, kind
            )
        return last

    async def _album(self, application: Application, thread: StaffThread, photos: list[str]) -> str | None:
        """The application's photos after its card: one album, one group message (of 20 a minute)."""
        chat_id = thread.chat_id
        if len(photos) == 1:
            sent = await self.client.request(
                chat_id, SendPhoto(chat_id=chat_id, photo=await self._photo(photos[0]), **_in_thread(thread))
            )
            return await self._linked(chat_id, sent.message_id, application, "relay")
        files = [await self._photo(ref) for ref in photos[:10]]  # an album holds ten at most
        album = await self.client.request(
            chat_id,
            SendMediaGroup(
                chat_id=chat_id, media=[InputMediaPhoto(media=f) for f in files], **_in_thread(thread)
            ),
        )
        last = None
        for sent in album:
            last = await self._linked(chat_id, sent.message_id, application, "relay")
        return last

    async def _attachment(
        self,
        application: Application,
        thread: StaffThread,
        kind: str,
        file: dict[str, Any],
        lang: str,
        link: str = "relay",
    ) -> str | None:
        """A voice note or document in the thread, fetched first where another channel keeps it; one
        too big to fetch is named in a line instead, so staff know to ask for it."""
        chat_id = thread.chat_id
        ref = await self._file(
            str(file["ref"]), kind, str(file.get("name") or ""), str(file.get("mime") or "")
        )
        method: SendVoice | SendDocument | SendMessage
        if ref is None:
            line = Msg("staff.attachment_too_big", {"kind": Msg(f"attachments.kind_{kind}"), "max": MAX_MB})
            method = SendMessage(chat_id=chat_id, text=translate(line, lang), **_in_thread(thread))
        else:
            method = (
                SendVoice(chat_id=chat_id, voice=ref, **_in_thread(thread))
                if kind == "voice"
                else SendDocument(chat_id=chat_id, document=ref, **_in_thread(thread))
            )
        sent = await self.client.request(chat_id, method)
        return await self._linked(chat_id, sent.message_id, application, link)

    async def _file(self, ref: str, kind: str, name: str, mime: str) -> str | BufferedInputFile | None:
        """A Telegram file id as it is; another channel's voice note or document fetched and uploaded;
        None for one over the size limit (another channel told no size: checked when fetched)."""
        if holds(ref):
            return ref
        if self.media is None:
            raise Permanent("a file another channel keeps, and no way to read it")
        data, fetched = await self.media(ref)
        if len(data) > MAX_BYTES:
            log.warning("a subscriber's %s of %d bytes is over the limit; named, not sent", kind, len(data))
            return None
        if not name:
            extension = {"audio/ogg": "ogg", "audio/mpeg": "mp3", "application/pdf": "pdf"}.get(
                (fetched or mime).split(";")[0], "bin"
            )
            name = f"{kind}.{extension}"
        return BufferedInputFile(data, filename=name)

    async def _photo(self, ref: object) -> str | BufferedInputFile:
        """A Telegram file id as it is; another channel's photo fetched (`Channels.media`) and uploaded."""
        text = str(ref)
        if holds(text):
            return text
        if self.media is None:
            raise Permanent("a photo another channel keeps, and no way to read it")
        data, mime = await self.media(text)
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
        visit: Msg | None = None,
    ) -> tuple[str, InlineKeyboardMarkup]:
        """The card's text and buttons, as they are for the application's current state."""
        text = self.desk.card_text(application, person, lang, deliveries, visit)
        return split_text(text)[0], self._buttons(application, lang)

    def _caption(self, card: _Card) -> str:
        """The card within a caption's 1024 characters, its description shortened to make room."""
        text = self.desk.card_text(card.application, card.person, card.lang, card.deliveries, card.visit)
        description = card.application.description or ""
        keep = max(0, len(description) - (len(text) - CAPTION_LIMIT) - 1)
        shorter = card.application.model_copy(update={"description": description[:keep] + "…"})
        text = self.desk.card_text(shorter, card.person, card.lang, card.deliveries, card.visit)
        return text[:CAPTION_LIMIT]

    def _has_replies(self, application: Application) -> bool:
        department = self.policy.departments.by_key(application.department or "")
        return department is not None and bool(department.replies)

    def _buttons(self, application: Application, lang: str) -> InlineKeyboardMarkup:
        rows = [
            [
                InlineKeyboardButton(
                    text=translate(Msg(f"staff.btn_{a}"), lang), callback_data=f"s:{application.id}:{a}"
                )
            ]
            for a in actions(application.status, self.desk.movable, self._has_replies(application))
        ]
        return InlineKeyboardMarkup(inline_keyboard=rows)


async def _card_is_photo(session: AsyncSession, thread: StaffThread) -> bool:
    if thread.card_message_id is None:
        return False
    key = (CHANNEL, str(thread.chat_id), str(thread.card_message_id))
    linked = await session.get(LinkedMessage, key)
    return linked is not None and linked.kind == PHOTO_CARD


@dataclass(frozen=True, slots=True)
class _Card:
    """What a staff card shows, read for one send: the application, where it goes, how it was told."""

    application: Application
    thread: StaffThread
    person: Person | None
    lang: str
    deliveries: Sequence[tuple[str, str]]
    is_photo: bool = False  # the card is the application's photo, its text the caption
    visit: Msg | None = None  # the card's line about the visit times, when staff proposed some


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
