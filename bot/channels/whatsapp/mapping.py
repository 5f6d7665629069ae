"""A Cloud API message → the dialog's neutral event, and who sent it.

A user is keyed by the business-scoped user id when the payload carries one, else by `wa_id` (the
phone in digits). WhatsApp has verified the sender's phone, so the "use my number" button becomes a
shared contact of the sender's own; a user whose number is withheld types it and confirms it with
the SMS one-time code, as anyone does whose phone the registry does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.channels.whatsapp.payload import Value, WaContact, WaMessage
from dialogs.events import Contact, Event, File, Location, Photo, Pressed, Text, Unsupported

CHOICE_RE = re.compile(r"^(\d{1,9})\|([A-Za-z0-9_:.\-]{1,64})$")
MORE_RE = re.compile(r"^more\|(\d{1,9})\|(\d{1,3})$")
OWN_PHONE = "wa_phone"  # the id of the "use my number" button
MEDIA_PREFIX = "wa:"  # a photo's, voice note's or document's reference that is a WhatsApp media id


@dataclass(frozen=True, slots=True)
class Inbound:
    message_id: str  # the wamid: the update id, for exactly-once
    user_key: str
    phone: str | None  # +994…, when WhatsApp gave it
    name: str
    event: Event | None  # None: a "More" press, answered by the channel from `more_from`
    rev: int | None = None
    more_from: int = 0


def sender(value: Value, message: WaMessage) -> tuple[str | None, str | None, str]:
    """(user key, phone in E.164 or None, profile name)."""
    contact = _contact(value, message)
    wa_id = message.from_ or (contact.wa_id if contact else None)
    user_key = message.from_user_id or (contact.user_id if contact else None) or wa_id
    phone = f"+{wa_id}" if wa_id and wa_id.isdigit() and 8 <= len(wa_id) <= 15 else None
    return user_key, phone, contact.profile.name if contact else ""


def _contact(value: Value, message: WaMessage) -> WaContact | None:
    for contact in value.contacts:
        if (message.from_ and contact.wa_id == message.from_) or (
            message.from_user_id and contact.user_id == message.from_user_id
        ):
            return contact
    return value.contacts[0] if len(value.contacts) == 1 else None


def map_message(value: Value, message: WaMessage) -> Inbound | None:
    user_key, phone, name = sender(value, message)
    if not user_key:
        return None
    reply_to = message.context.id if message.context is not None else None

    def inbound(event: Event | None, rev: int | None = None, more_from: int = 0) -> Inbound:
        return Inbound(message.id, user_key, phone, name, event, rev, more_from)

    if message.type == "text" and message.text is not None:
        return inbound(Text(message.text.body, reply_to=reply_to))
    if message.type in ("interactive", "button"):
        reply = None
        if message.interactive is not None:
            reply = message.interactive.button_reply or message.interactive.list_reply
        raw = reply.id if reply is not None else (message.button.payload if message.button else "")
        more = MORE_RE.fullmatch(raw)
        if more:
            return inbound(None, int(more.group(1)), int(more.group(2)))
        parsed = CHOICE_RE.fullmatch(raw)
        if parsed is None:  # tampered or foreign: a press of nothing, answered "no longer valid"
            return inbound(Pressed("", None))
        rev, choice = int(parsed.group(1)), parsed.group(2)
        if choice == OWN_PHONE:
            if phone is None:
                return inbound(Pressed("", None))
            return inbound(Contact(phone, own=True), rev)
        return inbound(Pressed(choice, rev), rev)
    if message.type == "location" and message.location is not None:
        return inbound(Location(message.location.latitude, message.location.longitude))
    if message.type == "image" and message.image is not None:
        caption = message.image.caption or ""
        return inbound(Photo(MEDIA_PREFIX + message.image.id, caption=caption, reply_to=reply_to))
    if message.type == "audio" and message.audio is not None:  # WhatsApp tells no size: checked when fetched
        return inbound(
            File("voice", MEDIA_PREFIX + message.audio.id, message.audio.mime_type or "", reply_to=reply_to)
        )
    if message.type == "document" and message.document is not None:
        doc = message.document
        name, caption = doc.filename or "", doc.caption or ""
        event = File("document", MEDIA_PREFIX + doc.id, doc.mime_type or "", None, name, caption, reply_to)
        return inbound(event)
    if message.type == "contacts" and message.contacts:
        phones = [p for shared in message.contacts for p in shared.phones if p.phone or p.wa_id]
        if phones:
            first = phones[0]
            own = bool(first.wa_id and message.from_ and first.wa_id == message.from_)
            return inbound(Contact(first.phone or f"+{first.wa_id}", own=own))
    return inbound(Unsupported(message.type))
