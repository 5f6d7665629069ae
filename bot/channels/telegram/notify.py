"""The outbox's sender for subscribers in Telegram: status changes and the department's messages."""

from __future__ import annotations

from aiogram.methods import SendDocument, SendMessage, SendPhoto, SendVoice

from bot.channels.telegram import CHANNEL
from bot.channels.telegram.client import TelegramClient
from bot.channels.telegram.limits import Priority
from bot.channels.telegram.render import split_text
from bot.core.clock import Clock
from bot.core.policy import StaffPolicy
from bot.notify.outbox import chat_text, staff_file
from storage import outbox, staff
from storage.db import Database
from storage.models import Notification

CAPTION_LIMIT = 1024


class TelegramNotifier:
    """Sends a notification to the subscriber's private chat, in the subscriber's language.

    Every message about an application is remembered, so the subscriber's reply to it goes to the
    application's staff thread.
    """

    def __init__(self, client: TelegramClient, db: Database, clock: Clock, policy: StaffPolicy) -> None:
        self.client = client
        self.db = db
        self.clock = clock
        self.policy = policy

    async def deliver(self, notification: Notification) -> str | None:
        chat_id = int(notification.user_key)
        if notification.kind == outbox.REPLY:  # an answer that could not leave at once, as it was
            payload = notification.payload
            method = SendMessage(
                chat_id=chat_id, text=str(payload["text"]), reply_markup=payload.get("markup")
            )
            return str((await self.client.request(chat_id, method, priority=Priority.ANSWER)).message_id)
        text = chat_text(notification, self.policy.departments, self.policy.reopen_within)
        paid = True if self.client.budget.paid_broadcast else None  # news, at the paid rate if enabled
        pieces = split_text(text)
        message_ids: list[int] = []
        file = staff_file(notification)
        if file is not None:  # the text is its caption when it fits, else the messages after it
            caption, pieces = (text, []) if len(text) <= CAPTION_LIMIT else ("", pieces)
            kind, ref = file["kind"], str(file["ref"])  # a file id of this bot's staff chat
            media: SendPhoto | SendVoice | SendDocument
            if kind == "voice":
                media = SendVoice(chat_id=chat_id, voice=ref, caption=caption, allow_paid_broadcast=paid)
            elif kind == "document":
                media = SendDocument(
                    chat_id=chat_id, document=ref, caption=caption, allow_paid_broadcast=paid
                )
            else:
                media = SendPhoto(chat_id=chat_id, photo=ref, caption=caption, allow_paid_broadcast=paid)
            message_ids.append((await self.client.request(chat_id, media)).message_id)
        for piece in pieces:
            message_ids.append(await self._text(chat_id, piece, paid))
        if notification.application_id is not None:
            async with self.db.transaction() as session:
                for message_id in message_ids:
                    await staff.link(
                        session,
                        CHANNEL,
                        chat_id,
                        message_id,
                        notification.application_id,
                        "to_subscriber",
                        self.clock(),
                    )
        return str(message_ids[-1])

    async def _text(self, chat_id: int, text: str, paid: bool | None) -> int:
        method = SendMessage(chat_id=chat_id, text=text, allow_paid_broadcast=paid)
        return (await self.client.request(chat_id, method)).message_id
