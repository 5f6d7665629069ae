"""A Telegram update as a neutral event: the only place that reads aiogram's update types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiogram.types import CallbackQuery, Message, Update
from pydantic import BaseModel

from bot.channels.telegram import CHANNEL
from dialogs.events import Command, Contact, Event, File, Location, Photo, Pressed, Text, Unsupported
from dialogs.ports import Subscriber

# Our callback data: "<question revision>|<choice id>", at most 64 bytes (Telegram's limit).
CALLBACK_RE = re.compile(r"^(\d{1,10})\|([A-Za-z0-9_:.\-]{1,50})$")
COMMAND_RE = re.compile(r"^/([A-Za-z0-9_]{1,32})(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)
INT64 = range(-(2**63), 2**63)  # Telegram's ids and numbers: 64-bit integers at most


@dataclass(frozen=True, slots=True)
class Inbound:
    """What one update means for the dialog, and where the answer goes."""

    update_id: int
    chat_id: int
    subscriber: Subscriber
    event: Event
    language: str | None
    callback_id: str | None = None


def callback_data(rev: int, choice: str) -> str:
    data = f"{rev}|{choice}"
    if len(data.encode()) > 64 or not CALLBACK_RE.fullmatch(data):
        raise ValueError(f"choice id {choice!r} does not fit Telegram's callback data")
    return data


def within_64_bits(update: Update) -> bool:
    """Whether every integer in an update fits 64 bits, as all of Telegram's do. A larger one (JSON
    allows any) fits no stored id: SQLite cannot hold it, PostgreSQL refuses it as a key."""
    pending: list[Any] = [update]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseModel):
            pending.extend(item.__dict__.values())
            pending.extend((item.__pydantic_extra__ or {}).values())  # fields unknown to aiogram
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, int) and item not in INT64:
            return False
    return True


def map_update(update: Update) -> Inbound | None:
    """The neutral meaning of an update; None for what is not a private conversation with a person."""
    if update.message is not None:
        return _map_message(update.update_id, update.message)
    if update.callback_query is not None:
        return _map_callback(update.update_id, update.callback_query)
    return None


def _map_message(update_id: int, message: Message) -> Inbound | None:
    sender = message.from_user
    if message.chat.type != "private" or sender is None or sender.is_bot:
        return None
    event: Event
    replied = message.reply_to_message
    reply_to = str(replied.message_id) if replied is not None else None
    if message.contact is not None:
        event = Contact(message.contact.phone_number, own=message.contact.user_id == sender.id)
    elif message.location is not None:
        event = Location(message.location.latitude, message.location.longitude)
    elif message.photo:
        # The largest size comes last.
        event = Photo(message.photo[-1].file_id, caption=message.caption or "", reply_to=reply_to)
    elif (file := file_of(message, reply_to)) is not None:
        event = file
    elif message.text is not None:
        command = COMMAND_RE.match(message.text.strip())
        if command:
            event = Command(command.group(1).lower(), (command.group(2) or "").strip())
        else:
            event = Text(message.text, reply_to=reply_to)
    else:
        event = Unsupported(message.content_type)
    return Inbound(update_id, message.chat.id, _subscriber(sender.id), event, sender.language_code)


def file_of(message: Message, reply_to: str | None = None) -> File | None:
    """A voice note or a document, as the platform describes it; None for anything else. A GIF comes
    as a document too, and is not one. A music file (Telegram's "audio") is a document: its type is
    refused as a document's would be, since Telegram would not send its file id as a voice note."""
    caption = message.caption or ""
    voice = message.voice
    if voice is not None:
        mime, size = voice.mime_type or "", voice.file_size
        return File("voice", voice.file_id, mime, size, caption=caption, reply_to=reply_to)
    doc = message.document or message.audio
    if doc is None or message.animation is not None:
        return None
    name, mime = doc.file_name or "", doc.mime_type or ""
    return File("document", doc.file_id, mime, doc.file_size, name, caption=caption, reply_to=reply_to)


def _map_callback(update_id: int, query: CallbackQuery) -> Inbound | None:
    message = query.message
    if message is None or message.chat.type != "private":
        return None
    parsed = CALLBACK_RE.fullmatch(query.data or "")
    # A tampered or foreign button becomes a press of nothing: the dialog answers "no longer valid".
    event = Pressed(parsed.group(2), int(parsed.group(1))) if parsed else Pressed("", None)
    user = query.from_user
    return Inbound(update_id, message.chat.id, _subscriber(user.id), event, user.language_code, query.id)


def _subscriber(user_id: int) -> Subscriber:
    return Subscriber(CHANNEL, str(user_id))
