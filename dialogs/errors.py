"""Domain errors: each carries the message the person should read."""

from __future__ import annotations

from locales import Msg


class DialogError(Exception):
    """Something the person can fix or should know; shown as its `msg`, the state stays as it was."""

    def __init__(self, msg: Msg) -> None:
        super().__init__(msg.key)
        self.msg = msg


class Invalid(DialogError):
    """Input that does not fit the question."""
