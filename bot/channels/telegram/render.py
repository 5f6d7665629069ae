"""Neutral replies as Telegram messages: inline keyboards for choices, a reply keyboard for requests."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.channels.telegram.mapping import callback_data
from bot.channels.text import split_text
from dialogs.replies import Message, Outcome, Request
from locales import Msg, translate

__all__ = ["Outgoing", "render", "split_text"]
TEXT_LIMIT = 4096

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | None
_REMOVE = ReplyKeyboardRemove(remove_keyboard=True)


@dataclass(frozen=True, slots=True)
class Outgoing:
    text: str
    markup: Markup = None


def render(outcome: Outcome, lang: str) -> list[Outgoing]:
    """The messages to send, in order: one for each turn where Telegram allows it.

    A note (no buttons, no request) goes at the head of the message after it, a blank line between,
    because every message counts against the bot's 30 a second. A location is asked for in words
    (the 📎 menu has it), so the description's question keeps its buttons in the same message. Only
    the contact is asked with a reply keyboard, its choices as buttons of that keyboard; when the
    dialog withdraws it, the first message without buttons takes it away. Plain text: nothing a
    subscriber typed is read as markup.
    """
    out: list[Outgoing] = []
    notes: list[str] = []
    for message in outcome.messages:
        text = _text(message, lang)
        if not message.choices and message.request != Request.CONTACT:
            notes.append(text)
            continue
        if outcome.withdraw and notes and not out:  # the notes carry the keyboard's removal
            out.extend(_plain("\n\n".join(notes)))
            notes = []
        out.extend(_render_message(message, "\n\n".join([*notes, text]), outcome.rev, lang))
        notes = []
    if notes:
        out.extend(_plain("\n\n".join(notes)))
    if outcome.withdraw and out and out[0].markup is None:
        out[0] = Outgoing(out[0].text, _REMOVE)
    elif outcome.withdraw and out and isinstance(out[0].markup, InlineKeyboardMarkup):
        # Only a question with buttons: its text goes alone, taking the keyboard away, and its
        # buttons follow under "Or choose:".
        first = out[0]
        out[:1] = [
            Outgoing(first.text, _REMOVE),
            Outgoing(translate(Msg("telegram.or_choose"), lang), first.markup),
        ]
    return out


def _text(message: Message, lang: str) -> str:
    text = "\n".join(translate(part, lang) for part in message.parts)
    if message.request == Request.LOCATION:
        text += "\n\n" + translate(Msg("telegram.location_hint"), lang)
    return text


def _plain(text: str) -> list[Outgoing]:
    return [Outgoing(chunk) for chunk in split_text(text)]


def _render_message(message: Message, text: str, rev: int, lang: str) -> list[Outgoing]:
    chunks = split_text(text)
    return [Outgoing(chunk) for chunk in chunks[:-1]] + [Outgoing(chunks[-1], _keyboard(message, rev, lang))]


def _keyboard(message: Message, rev: int, lang: str) -> Markup:
    """The one keyboard a message carries: for the contact, "share my number" and, under it, the
    choices as buttons that send their label (the dialog reads a label as its choice); else the
    choices as inline buttons."""
    if message.request == Request.CONTACT:
        share = KeyboardButton(text=translate(Msg("identify.share_button"), lang), request_contact=True)
        rows = [[share]] + [[KeyboardButton(text=translate(c.label, lang))] for c in message.choices]
        return ReplyKeyboardMarkup(keyboard=rows, resize_keyboard=True, one_time_keyboard=True)
    if not message.choices or rev < 0:
        return None
    buttons = [
        [InlineKeyboardButton(text=translate(c.label, lang)[:64], callback_data=callback_data(rev, c.id))]
        for c in message.choices
    ]
    return InlineKeyboardMarkup(inline_keyboard=buttons)
