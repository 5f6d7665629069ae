"""The stored state of one conversation: a step, JSON data, the language and the question revision."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from locales import DEFAULT_LANGUAGE, LANGUAGES


class Step(StrEnum):
    """Where a conversation stands; the graph between them is in `machine.py`, with a rule for each."""

    MENU = "menu"
    ASK_PHONE = "ask_phone"
    ASK_CODE = "ask_code"
    ASK_OTP = "ask_otp"
    ACCOUNT = "account"
    METERING_POINT = "metering_point"
    REASON = "reason"
    ALREADY_OPEN = "already_open"  # an open application on the same account: follow it, or file anew
    KNOWN_OUTAGE = "known_outage"  # "no power" where an outage is known: be told when it is over, or file
    DESCRIPTION = "description"  # the description, a photo and the location, on one screen
    CONTACTS = "contacts"  # the mobile, more numbers and the e-mail, on one screen …
    MOBILE = "mobile"  # … each changed on its own when the subscriber asks
    EXTRA_PHONES = "extra_phones"
    EMAIL = "email"
    REVIEW = "review"
    CONFIRM_NEW = "confirm_new"  # a new application while a draft waits: go on with it, or drop it?
    MY_LIST = "my_list"
    APP_DETAIL = "app_detail"
    CONFIRM_CANCEL = "confirm_cancel"
    RATE_STARS = "rate_stars"  # a completed application: 1 to 5 stars …
    RATE_COMMENT = "rate_comment"  # … and a comment, which may be skipped
    REOPEN_REASON = "reopen_reason"  # a completed application reopened: why the problem is not solved
    LANGUAGE = "language"

    @classmethod
    def parse(cls, value: object) -> Step:
        """A stored step; one an earlier version had becomes the step that does its work now."""
        return cls(LEGACY_STEPS.get(str(value), str(value)))


# Steps of earlier versions that may still be stored in a conversation, and where they went.
LEGACY_STEPS = {"attachments": Step.DESCRIPTION.value}


@dataclass(frozen=True, slots=True)
class State:
    """Everything the dialog remembers between two events; `data` holds JSON primitives only."""

    step: Step = Step.MENU
    data: dict[str, Any] = field(default_factory=dict)
    lang: str = DEFAULT_LANGUAGE
    rev: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {"step": self.step.value, "data": self.data, "lang": self.lang, "rev": self.rev},
            ensure_ascii=False,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | None, lang: str = DEFAULT_LANGUAGE) -> State:
        """Read a stored state; anything unreadable becomes a fresh menu rather than a crash."""
        if not raw:
            return cls(lang=lang)
        try:
            obj = json.loads(raw)
            step = Step.parse(obj["step"])
            data = obj.get("data") or {}
            stored_lang = obj.get("lang") or lang
            rev = int(obj.get("rev") or 0)
        except (ValueError, KeyError, TypeError):
            return cls(lang=lang)
        if not isinstance(data, dict):
            data = {}
        return cls(step=step, data=data, lang=stored_lang if stored_lang in LANGUAGES else lang, rev=rev)

    def evolve(self, **changes: Any) -> State:
        return replace(self, **changes)

    @property
    def draft(self) -> dict[str, Any]:
        """The application being filled in; empty when there is none."""
        draft = self.data.get("draft")
        return draft if isinstance(draft, dict) else {}

    def with_data(self, **changes: Any) -> State:
        """A copy with data keys set (None removes a key)."""
        data = dict(self.data)
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return replace(self, data=data)

    def go(self, step: Step, **changes: Any) -> State:
        """Move to `step` on its first page, setting data keys on the way."""
        return replace(self.with_data(page=None, **changes), step=step)
