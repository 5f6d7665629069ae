"""The dialog's neutral reply → Cloud API message bodies (without the recipient).

Up to 3 choices become reply buttons (titles at most 20 characters, unique), up to 10 a list (row
titles at most 24, descriptions at most 72), more a list of 9 and "More", which shows the next ones.
Texts are split under 4,096 characters; an interactive body holds at most 1,024, so a longer text goes
first as text and the buttons follow with a short prompt. A button's id is `<revision>|<choice>`.
"""

from __future__ import annotations

from typing import Any

from bot.channels.text import split_text
from bot.channels.whatsapp.mapping import OWN_PHONE
from dialogs.replies import Message, Outcome, Request
from dialogs.validate import display_phone
from locales import Msg, translate

TEXT_LIMIT = 4096
BODY_LIMIT = 1024
BUTTON_TITLE = 20
ROW_TITLE = 24
ROW_DESCRIPTION = 72
MAX_BUTTONS = 3
MAX_ROWS = 10

Body = dict[str, Any]


def render(outcome: Outcome, lang: str, phone: str | None, more_from: int = 0) -> list[Body]:
    bodies: list[Body] = []
    last = len(outcome.messages) - 1
    for index, message in enumerate(outcome.messages):
        bodies.extend(_message(message, outcome.rev, lang, phone, more_from if index == last else 0))
    return bodies


def _message(message: Message, rev: int, lang: str, phone: str | None, more_from: int) -> list[Body]:
    text = "\n".join(translate(part, lang) for part in message.parts)
    options: list[tuple[str, str]] = [(f"{rev}|{c.id}", translate(c.label, lang)) for c in message.choices]
    if message.request == Request.CONTACT and phone is not None:
        label = translate(Msg("wa.use_my_number", {"phone": display_phone(phone)}), lang)
        options.insert(0, (f"{rev}|{OWN_PHONE}", label))
    if message.request == Request.LOCATION:
        text += "\n\n" + translate(Msg("wa.location_hint"), lang)
    if not options:
        return [_text(piece) for piece in split_text(text, TEXT_LIMIT)]
    bodies: list[Body] = []
    if len(text) > BODY_LIMIT:
        bodies += [_text(piece) for piece in split_text(text, TEXT_LIMIT)]
        text = translate(Msg("wa.choose"), lang)
    if more_from:
        text = translate(Msg("wa.more_title"), lang)
    if len(options) <= MAX_BUTTONS and not more_from:
        bodies.append(_buttons(text, options))
    else:
        bodies.append(_list(text, options, rev, lang, more_from))
    return bodies


def _text(body: str) -> Body:
    return {"type": "text", "text": {"body": body, "preview_url": False}}


def _buttons(text: str, options: list[tuple[str, str]]) -> Body:
    titles = _unique([_cut(label, BUTTON_TITLE) for _, label in options], BUTTON_TITLE)
    return {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": text},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": option_id, "title": title}}
                    for (option_id, _), title in zip(options, titles, strict=True)
                ]
            },
        },
    }


def _list(text: str, options: list[tuple[str, str]], rev: int, lang: str, start: int) -> Body:
    shown = options[start:]
    more = len(shown) > MAX_ROWS
    if more:
        shown = shown[: MAX_ROWS - 1]
    titles = _unique([_cut(label, ROW_TITLE) for _, label in shown], ROW_TITLE)
    rows: list[dict[str, str]] = []
    for (option_id, label), title in zip(shown, titles, strict=True):
        row = {"id": option_id, "title": title}
        if title != label:  # cut short: the whole label is the description
            row["description"] = _cut(label, ROW_DESCRIPTION)
        rows.append(row)
    if more:
        following = start + len(shown)
        rows.append(
            {
                "id": f"more|{rev}|{following}",
                "title": _cut(translate(Msg("wa.more"), lang), ROW_TITLE),
                "description": _cut(
                    translate(Msg("wa.more_count", {"count": len(options) - following}), lang),
                    ROW_DESCRIPTION,
                ),
            }
        )
    return {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": text},
            "action": {
                "button": _cut(translate(Msg("wa.list_button"), lang), BUTTON_TITLE),
                "sections": [{"title": _cut(translate(Msg("wa.section"), lang), ROW_TITLE), "rows": rows}],
            },
        },
    }


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _unique(titles: list[str], limit: int) -> list[str]:
    """WhatsApp refuses two buttons or rows with one title: number the repeats."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for title in titles:
        count = seen.get(title, 0)
        seen[title] = count + 1
        if count:
            suffix = f" ({count + 1})"
            title = _cut(title, limit - len(suffix)).rstrip("…") + suffix
        out.append(title)
    return out
