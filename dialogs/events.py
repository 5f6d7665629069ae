"""What a subscriber can do, as neutral events a channel builds from its platform's update."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Text:
    """Free text typed by the subscriber; `reply_to` is the platform's id of the message it answers."""

    text: str
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Pressed:
    """A button was pressed; `rev` is the question revision the button was drawn for, when known."""

    choice: str
    rev: int | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A command such as /start, /new, /my, /cancel, /lang, /help (name without the slash)."""

    name: str
    arg: str = ""


@dataclass(frozen=True, slots=True)
class Contact:
    """A shared contact; `own` is true only when the platform vouches it is the sender's own number."""

    phone: str
    own: bool


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo, by the platform's reference to the stored file, with its caption."""

    ref: str
    caption: str = ""
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class File:
    """A voice note or a document (`kind`), by the platform's reference, with what the platform says
    of it: its type, its size in bytes when known, and the document's file name."""

    kind: str
    ref: str
    mime: str = ""
    size: int | None = None
    name: str = ""
    caption: str = ""
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """Something the platform delivered that the dialog cannot use (a sticker, a voice note …)."""

    kind: str


Event = Text | Pressed | Command | Contact | Location | Photo | File | Unsupported

COMMANDS = ("start", "new", "my", "cancel", "lang", "help")
