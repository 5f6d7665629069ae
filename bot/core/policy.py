"""How applications reach staff: the departments and the deadlines, as one value the service holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from bot.core.departments import Departments

DEFAULT_TAKE_WITHIN = timedelta(hours=4)
DEFAULT_DONE_WITHIN = timedelta(days=5)
DEFAULT_REOPEN_WITHIN = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class StaffPolicy:
    departments: Departments = field(default_factory=lambda: Departments((), None))
    take_within: timedelta = DEFAULT_TAKE_WITHIN  # SLA_TAKE_HOURS
    done_within: timedelta = DEFAULT_DONE_WITHIN  # SLA_DONE_DAYS
    reopen_within: timedelta = DEFAULT_REOPEN_WITHIN  # REOPEN_DAYS: a completed one may be reopened so long
