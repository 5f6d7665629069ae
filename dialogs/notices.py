"""Who is told what, and how: the notification policy, in one place.

The portal's promise is kept: an SMS (and an e-mail, when one was given) when an application is
registered and when it has its result. Every status change is also said in the subscriber's chat, and
in the staff thread the card shows it. A chat message that can never arrive (the bot was blocked, the
chat is gone) is replaced by an SMS with the link to the status page, except for a result, whose SMS
is already on its way.

Each rule returns `Notice`s: what to say and by which way (`CHAT`, `SMS`, `EMAIL` to the subscriber,
`THREAD` to the staff). Storage queues them in the outbox, in the transaction of the change itself,
addressed to the application's chat, mobile, e-mail or staff thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dialogs.lifecycle import NEEDS_RESULT, Role, Status

CHAT = "chat"  # the chat the application was filed from
SMS = "sms"  # the application's mobile
EMAIL = "email"  # the application's e-mail, when it has one
THREAD = "thread"  # the application's thread in its staff chat
TRANSFERRED = "transferred"  # the chat's news that another department has the application
VISIT = "visit"  # the chat's news about visit times: proposed, or a reminder of the one picked
REGISTERED = "registered"
RESULT = "result"
FALLBACK_KINDS = frozenset(
    {"status", "staff_message", TRANSFERRED, VISIT}
)  # chat messages an SMS may stand in for
# A result's news by the status it closes with: a refusal gives its reason, not "the result".
RESULT_NEWS = {Status.REJECTED: "notify.status_refused"}
RESULT_NEWS_KEYS = frozenset({"notify.status_result", *RESULT_NEWS.values()})
RATE_NEWS = "notify.status_result"  # the news of work completed: its chat message asks for a rating
# What the staff thread reads when the subscriber changed the status themselves ({reason}: their note).
SUBSCRIBER_NOTES = {Status.CANCELLED: "staff.note_cancelled", Status.REOPENED: "staff.note_reopened"}
LOW_RATING = 2  # stars: a rating this low is told to the department, with its comment


@dataclass(frozen=True, slots=True)
class Notice:
    via: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


def _contacts(event: str, params: dict[str, Any]) -> list[Notice]:
    """The SMS and the e-mail of a registration or a result."""
    return [
        Notice(SMS, f"sms_{event}", {"key": f"sms.{event}", "params": params}),
        Notice(EMAIL, f"email_{event}", {"event": event}),
    ]


def registered(number: str) -> list[Notice]:
    """A new application: the SMS and e-mail the portal promises (the staff card is routed apart)."""
    return _contacts(REGISTERED, {"number": number})


def status_changed(number: str, new: Status, by: Role, result: str | None) -> list[Notice]:
    """A status change: the card shows it; the subscriber is told, unless they made it themselves."""
    notices = [Notice(THREAD, "card_refresh")]
    if by == Role.SUBSCRIBER:  # they saw it confirmed in their chat; the staff read it in the thread
        key = SUBSCRIBER_NOTES.get(new, "staff.note_cancelled")
        said = {"key": key, "params": {"number": number, "reason": result or ""}}
        return [*notices, Notice(THREAD, "note", said)]
    status = {"$msg": f"status.{new.value}"}
    if new in NEEDS_RESULT:
        params = {"number": number, "status": status, "result": result}
        notices += _contacts(RESULT, {"number": number, "status": status})
        key = RESULT_NEWS.get(new, "notify.status_result")
        return [*notices, Notice(CHAT, "status", {"key": key, "params": params})]
    params = {"number": number, "status": status}
    return [*notices, Notice(CHAT, "status", {"key": "notify.status", "params": params})]


def transferred(number: str, department: str) -> list[Notice]:
    """Staff moved the application to another department (its key): the subscriber's chat is told
    which one has it now, named in their language when it is sent."""
    return [Notice(CHAT, TRANSFERRED, {"number": number, "department": department})]


def rated(number: str, stars: int, comment: str | None) -> list[Notice]:
    """A rating: a low one is a note in the staff thread, so the department can look into it."""
    if stars > LOW_RATING:
        return []
    params = {"number": number, "stars": stars, "comment": comment or ""}
    key = "staff.note_rating_low_comment" if comment else "staff.note_rating_low"
    return [Notice(THREAD, "note", {"key": key, "params": params})]


def visit_proposed(number: str, windows: list[str]) -> list[Notice]:
    """Staff propose visit times: the subscriber is asked to pick one in "My applications"."""
    params = {"number": number, "windows": "\n".join(f"• {w}" for w in windows)}
    return [Notice(CHAT, VISIT, {"key": "notify.visit_proposed", "params": params})]


def visit_chosen(number: str, window: str | None) -> list[Notice]:
    """The subscriber picked a window (None: none suits): the thread hears it, the card shows it."""
    if window is None:
        said = {"key": "staff.note_visit_declined", "params": {"number": number}}
        return [Notice(THREAD, "note", said)]
    said = {"key": "staff.note_visit_chosen", "params": {"number": number, "window": window}}
    return [Notice(THREAD, "note", said), Notice(THREAD, "card_refresh")]


def visit_reminder(number: str, window: str) -> Notice:
    """The evening before the visit, to the subscriber's chat."""
    params = {"number": number, "window": window}
    return Notice(CHAT, VISIT, {"key": "notify.visit_reminder", "params": params})


def chat_lost(kind: str, payload: dict[str, Any], number: str) -> Notice | None:
    """What replaces a chat message that can never arrive: an SMS with the link, or nothing."""
    if kind not in FALLBACK_KINDS or payload.get("key") in RESULT_NEWS_KEYS:
        return None  # not news the subscriber is owed, or a result, whose SMS is on its way already
    return Notice(SMS, "sms_fallback", {"key": "sms.news", "params": {"number": number}})
