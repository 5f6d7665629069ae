"""The fixed lists of an application: the reasons a subscriber can give and what the review can edit.

A reason is an id here and its text under `reason.<id>` in the catalogs; the question, the review card
and every card and page that shows an application read the text by that key. So adding a reason is one
line in `REASONS` and its text in `locales/messages.pot` and the three `messages.po` files. An id is
stored with the application (at most 32 characters) and is part of a button id, so it never changes.
"""

from __future__ import annotations

from dialogs.state import Step

REASONS: tuple[str, ...] = (
    "no_power",
    "damaged_cable",
    "faulty_meter",
    "switchboard",
    "sparks",
    "low_voltage",
    "other",
)
SAFETY_REASON = "sparks"  # answered with the safety advice before the next question
NO_POWER = "no_power"  # where an outage is known, the subscriber is told so before filing
# The reasons that say nothing by themselves: a description is required. For the others it may be
# left out, as the chosen reason already is the portal's "səbəb".
DESCRIBE_REASONS = frozenset({"other"})

# The review card's "edit" buttons: the name in the button id and in `review.edit_<name>`, and its step.
EDITABLE: dict[str, Step] = {
    "account": Step.ACCOUNT,
    "reason": Step.REASON,
    "description": Step.DESCRIPTION,
    "contacts": Step.CONTACTS,
}
