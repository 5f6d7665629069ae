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


@dataclass(frozen=True, slots=True)
class Outgoing:
    text: str
    markup: Markup = None


def render(outcome: Outcome, lang: str) -> list[Outgoing]:
    """The messages to send, in order. Plain text: nothing a subscriber typed is read as markup."""
    out: list[Outgoing] = []
    for message in outcome.messages:
        out.extend(_render_message(message, outcome.rev, lang))
    if out and out[0].markup is None and not any(isinstance(o.markup, ReplyKeyboardMarkup) for o in out):
        # No request any more: a note that leads the answer (the welcome after a shared contact, say)
        # takes the request keyboard away. A message with buttons cannot carry that too.
        out[0] = Outgoing(out[0].text, ReplyKeyboardRemove(remove_keyboard=True))
    return out


def _render_message(message: Message, rev: int, lang: str) -> list[Outgoing]:
    chunks = split_text("\n".join(translate(part, lang) for part in message.parts))
    inline = (
        InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=translate(c.label, lang)[:64], callback_data=callback_data(rev, c.id)
                    )
                ]
                for c in message.choices
            ]
        )
        if message.choices and rev >= 0
        else None
    )
    if message.request is None:
        return [Outgoing(chunk) for chunk in chunks[:-1]] + [Outgoing(chunks[-1], inline)]
    # One message carries one keyboard: the request button under the question, the choices after it.
    button = (
        KeyboardButton(text=translate(Msg("identify.share_button"), lang), request_contact=True)
        if message.request == Request.CONTACT
        else KeyboardButton(text=translate(Msg("telegram.share_location"), lang), request_location=True)
    )
    keyboard = ReplyKeyboardMarkup(keyboard=[[button]], resize_keyboard=True, one_time_keyboard=True)
    out = [Outgoing(chunk) for chunk in chunks[:-1]] + [Outgoing(chunks[-1], keyboard)]
    if inline is not None:
        out.append(Outgoing(translate(Msg("telegram.or_choose"), lang), inline))
    return out
