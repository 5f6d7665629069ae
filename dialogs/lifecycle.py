"""The application's status lifecycle, in one place.

    registered ──→ in_progress ──→ completed | rejected
        │  └──────────────────────→ rejected     (staff may turn down what is not theirs to fix)
        └──→ cancelled                           (the subscriber, before work starts)
    completed ──→ reopened ──→ in_progress | rejected
                                                 (the subscriber: the problem is back, soon after)

`completed` and `rejected` carry the result text that staff write; every change becomes a
`StatusChange` record, so the audit trail and the subscriber's history are the same rows. A
`completed` application may be rated by its subscriber (`rateable`), once, and reopened by them
(`reopenable`) with a reason: within REOPEN_DAYS of its completion and once (`storage.applications`
keeps those two rules, which need the time and the trail); it is then open again, as registered is.

This module is the one place a status is defined. The staff's buttons and commands (`STAFF_STEPS`),
what the subscriber may do (`ALLOWED_BY`), the dialog's "open" and "cancellable", the cards and the
command line all derive from it; a new status is a line here and its words in the catalogs
(`status.<value>`, and `staff.btn_<button>` when staff set it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    REGISTERED = "registered"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    REOPENED = "reopened"


class Role(StrEnum):
    SUBSCRIBER = "subscriber"
    STAFF = "staff"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.REGISTERED: frozenset({Status.IN_PROGRESS, Status.REJECTED, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.REJECTED}),
    Status.COMPLETED: frozenset({Status.REOPENED}),
    Status.REJECTED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.REOPENED: frozenset({Status.IN_PROGRESS, Status.REJECTED}),
}
NEEDS_RESULT = frozenset({Status.COMPLETED, Status.REJECTED})
OPEN = frozenset({Status.REGISTERED, Status.IN_PROGRESS, Status.REOPENED})


@dataclass(frozen=True, slots=True)
class StaffStep:
    """A status staff set, as they name it: a button in the staff chat, commands in the terminal."""

    status: Status
    button: str  # the staff chat's button: callback `s:<id>:<button>`, label `staff.btn_<button>`
    commands: tuple[str, ...]  # the terminal's staff commands: `<command> <number> [text]`
    icon: str = ""  # leads the staff thread's note when the step comes with a result


STAFF_STEPS = (
    StaffStep(Status.IN_PROGRESS, "work", ("take", "progress")),
    StaffStep(Status.COMPLETED, "done", ("complete",), "✅"),
    StaffStep(Status.REJECTED, "reject", ("reject",), "❌"),
)
ALLOWED_BY: dict[Role, frozenset[Status]] = {
    Role.SUBSCRIBER: frozenset({Status.CANCELLED, Status.REOPENED}),
    Role.STAFF: frozenset(step.status for step in STAFF_STEPS),
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


def rateable(status: str) -> bool:
    """Whether the subscriber may rate the work: only what was completed (a refusal is not work done)."""
    return status == Status.COMPLETED


def reopenable(status: str) -> bool:
    """Whether the subscriber may reopen it from where it stands (the window and "once" aside)."""
    return Status.REOPENED in _next(status) and Status.REOPENED in ALLOWED_BY[Role.SUBSCRIBER]


def is_open(status: str) -> bool:
    """Still to be worked on: staff see it in /open, deadlines run."""
    return status in OPEN


def cancellable(status: str) -> bool:
    """Whether the subscriber may still cancel it (not a status we know: no)."""
    return Status.CANCELLED in _next(status) and Status.CANCELLED in ALLOWED_BY[Role.SUBSCRIBER]


def next_steps(status: str) -> list[StaffStep]:
    """The steps staff may take from this status, in lifecycle order."""
    return [step for step in STAFF_STEPS if step.status in _next(status)]


def _next(status: str) -> frozenset[Status]:
    try:
        return TRANSITIONS[Status(status)]
    except ValueError:  # a status written by a newer version, or by hand
        return frozenset()
