"""The application's status lifecycle, in one place.

    registered ──→ in_progress ──→ completed | rejected
        │  └──────────────────────→ rejected     (staff may turn down what is not theirs to fix)
        └──→ cancelled                           (the subscriber, before work starts)

`completed` and `rejected` carry the result text that staff write; every change becomes a
`StatusChange` record, so the audit trail and the subscriber's history are the same rows.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    REGISTERED = "registered"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Role(StrEnum):
    SUBSCRIBER = "subscriber"
    STAFF = "staff"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.REGISTERED: frozenset({Status.IN_PROGRESS, Status.REJECTED, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.REJECTED}),
    Status.COMPLETED: frozenset(),
    Status.REJECTED: frozenset(),
    Status.CANCELLED: frozenset(),
}
NEEDS_RESULT = frozenset({Status.COMPLETED, Status.REJECTED})
OPEN = frozenset({Status.REGISTERED, Status.IN_PROGRESS})
ALLOWED_BY: dict[Role, frozenset[Status]] = {
    Role.SUBSCRIBER: frozenset({Status.CANCELLED}),
    Role.STAFF: frozenset({Status.IN_PROGRESS, Status.COMPLETED, Status.REJECTED}),
}
RESULT_MAX = 2000


class IllegalTransition(Exception):
    """A status change the lifecycle does not allow; `key` names the message that explains why."""

    def __init__(self, key: str, **params: str) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


def check(current: Status, new: Status, role: Role, result: str | None) -> str | None:
    """Refuse an illegal change; return the result text to store (stripped), if any."""
    if new not in ALLOWED_BY[role]:
        raise IllegalTransition("status.error_role", status=new.value)
    if new not in TRANSITIONS[current]:
        raise IllegalTransition("status.error_transition", current=current.value, new=new.value)
    text = (result or "").strip()
    if new in NEEDS_RESULT and not text:
        raise IllegalTransition("status.error_result_required", status=new.value)
    if len(text) > RESULT_MAX:
        raise IllegalTransition("status.error_result_long", max=str(RESULT_MAX))
    return text or None
