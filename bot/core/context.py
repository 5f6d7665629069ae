"""What a log line is about: the update being handled, its channel, and the application concerned.

Where an update comes in, its channel and id are set for as long as it is handled
(`with log_context(channel=..., update_id=...)`); where the application becomes known, its number is
added (`bind(application=...)`) until that block ends. The outbox worker does the same for each
message it sends. The log formatters (`bot.core.logs`) read the fields of the line being written.

The fields live in a `ContextVar`: an asyncio task starts with a copy of its creator's, and what a
task sets is its own, so concurrent updates never see each other's. Leaving a `log_context` puts back
what was there before it, whatever was bound inside, so nothing is carried to the next update.
Setting them costs a dict per update; nothing is formatted unless a line is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType

FIELDS = ("channel", "update_id", "application")  # in the order a line shows them
_NONE: Mapping[str, str] = {}
_current: ContextVar[Mapping[str, str]] = ContextVar("isiqbot_log_context", default=_NONE)
_ON_EXCEPTION = "_isiqbot_log_context"


def current() -> Mapping[str, str]:
    """The fields set where this code runs (never changed in place: a new mapping each time)."""
    return _current.get()


def of_exception(exc: BaseException | None) -> Mapping[str, str]:
    """The fields that were set where `exc` left a `log_context` (empty when it left none).

    A failure that escapes the update's handler is logged by whoever catches it (the web server's
    middleware), after the block has ended: the line still says which update it was.
    """
    found = getattr(exc, _ON_EXCEPTION, None)
    return found if isinstance(found, Mapping) else _NONE


def _given(channel: object, update_id: object, application: object) -> dict[str, str]:
    values = {"channel": channel, "update_id": update_id, "application": application}
    return {key: str(value) for key, value in values.items() if value is not None and value != ""}


def log_context(
    *,
    channel: str | None = None,
    update_id: object = None,
    application: str | None = None,
    keep: bool = False,
) -> Block:
    """The given fields (None: left as they are) on every line logged inside the block.

    `keep`: the fields already set stay as they are; only the missing ones are added. The service
    enters the update's block so, after its channel, which may name the update its own way (a
    WhatsApp message by a digest of its id: the id itself encodes the person's number).

    `with log_context(...)`, or `async with` beside another asynchronous context manager.
    """
    return Block(_given(channel, update_id, application), keep)


class Block:
    """A `log_context` block. One that changes nothing (the service entered again for the update its
    channel has set) leaves the fields alone, so what is bound inside it lasts until the outer one ends.
    """

    __slots__ = ("_given", "_keep", "_token")

    def __init__(self, given: dict[str, str], keep: bool = False) -> None:
        self._given = given
        self._keep = keep
        self._token: Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        before = _current.get()
        given = {k: v for k, v in self._given.items() if k not in before} if self._keep else self._given
        if any(before.get(key) != value for key, value in given.items()):
            self._token = _current.set({**before, **given})

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception):
            _remember(exc)
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.__exit__(kind, exc, trace)


def bind(*, channel: str | None = None, update_id: object = None, application: str | None = None) -> None:
    """Add fields to the current `log_context` until it ends; outside one, nothing (it would never end)."""
    before = _current.get()
    if not before:
        return
    given = _given(channel, update_id, application)
    if any(before.get(key) != value for key, value in given.items()):
        _current.set({**before, **given})


def _remember(exc: BaseException) -> None:
    """The fields on the exception, from the innermost block it leaves (the most specific)."""
    fields = _current.get()
    if fields and not of_exception(exc):
        try:
            setattr(exc, _ON_EXCEPTION, fields)
        except (AttributeError, TypeError):  # an exception type that takes no attributes
            pass
