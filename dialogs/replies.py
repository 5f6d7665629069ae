"""What the dialog asks a channel to show: data, never platform types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from locales import Msg


class Request(StrEnum):
    """Something the channel should ask the platform for, beside the text."""

    CONTACT = "contact"
    LOCATION = "location"


@dataclass(frozen=True, slots=True)
class Choice:
    """One button: `id` comes back in a `Pressed` event, `label` is shown."""

    id: str
    label: Msg


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its text as paragraphs, optional buttons and an optional platform request."""

    parts: tuple[Msg, ...]
    choices: tuple[Choice, ...] = ()
    request: Request | None = None


Notes = tuple[Message, ...]  # what a step says before the next question


def note(key: str, **params: Any) -> Message:
    """A message of one paragraph and no buttons."""
    return Message((Msg(key, params),))


# The two buttons most questions end with.
BACK = Choice("back", Msg("common.back"))
CANCEL = Choice("cancel", Msg("common.cancel"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """The messages to send for one event, and the question revision their buttons belong to.

    `withdraw`: the request asked before (a contact) was not answered by it and is no longer asked, so
    a channel that keeps a request on screen (Telegram's reply keyboard) takes it away.
    """

    messages: tuple[Message, ...]
    rev: int
    changed: bool
    withdraw: bool = False
