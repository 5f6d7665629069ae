"""Visit booking: staff propose up to three time windows, the subscriber picks one from the
application's page in "My applications", and both sides are reminded the evening before.

    APP_DETAIL ─visit:<proposal>:<n>→ APP_DETAIL (picked: the thread hears it, the card shows it)
        └─visit_none:<proposal>→ APP_DETAIL (none suits: the thread hears it, staff may propose again)

Windows are written by staff in Baku time, one per `;` or line: "02.12 10:00-12:00". A button names
its proposal (the second it was made), so a button of a replaced proposal never picks a new window.
A pick is final for its proposal; staff proposing again is how a visit is moved.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from dialogs import identify
from dialogs.errors import Invalid
from dialogs.events import Event, Pressed
from dialogs.ports import ApplicationView, Context, VisitView, Window
from dialogs.replies import Choice, Message, Notes, note
from dialogs.state import State, Step
from locales import LOCAL_TZ, Msg

MAX_WINDOWS = 3
AHEAD = timedelta(days=30)  # a window may start at most this far ahead
LONGEST = timedelta(hours=12)  # a window is at most this long
REMIND_HOUR = 18  # Baku time, the evening before the visit's day
EXAMPLE = "02.12 10:00-12:00; 03.12 14:00-16:00"
PICK = "visit:"  # visit:<proposal>:<n>
NONE = "visit_none:"  # visit_none:<proposal>

_WINDOW = re.compile(
    r"^(?P<day>\d{1,2})[./-](?P<month>\d{1,2})(?:[./-](?P<year>\d{2}|\d{4}))?[,\s]+"
    r"(?P<h1>\d{1,2})(?:[:.](?P<m1>\d{2}))?\s*(?:-|–|—|\.\.)\s*(?P<h2>\d{1,2})(?:[:.](?P<m2>\d{2}))?$"
)
_SPLIT = re.compile(r"[;\n]+")


def shown(window: Window) -> str:
    """A window as both sides read it, in Baku time: 02.12 10:00–12:00."""
    start, end = (moment.astimezone(LOCAL_TZ) for moment in window)
    return f"{start:%d.%m %H:%M}–{end:%H:%M}"


def remind_at(start: datetime) -> datetime:
    """When a visit starting then is reminded: 18:00 Baku the day before."""
    day = start.astimezone(LOCAL_TZ).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, REMIND_HOUR, tzinfo=LOCAL_TZ)


def parse(text: str, now: datetime) -> list[Window]:
    """Up to three windows staff typed, as UTC; raises Invalid (a message for the group) when they
    cannot be read, are past, too far ahead, overlap, or are more than three."""
    parts = [part.strip() for part in _SPLIT.split(text) if part.strip()]
    if not parts:
        raise Invalid(Msg("staff.visit_unreadable", {"text": "—", "example": EXAMPLE}))
    if len(parts) > MAX_WINDOWS:
        raise Invalid(Msg("staff.visit_too_many", {"max": MAX_WINDOWS, "count": len(parts)}))
    windows = sorted(_window(part, now) for part in parts)
    for (_, end), (start, _) in pairwise(windows):
        if start < end:
            raise Invalid(Msg("staff.visit_overlap"))
    return windows


def _window(part: str, now: datetime) -> Window:
    found = _WINDOW.fullmatch(part)
    if found is None:
        raise Invalid(Msg("staff.visit_unreadable", {"text": part[:40], "example": EXAMPLE}))
    local_now = now.astimezone(LOCAL_TZ)
    try:
        day, month = int(found["day"]), int(found["month"])
        year = int(found["year"]) if found["year"] else local_now.year
        year += 2000 if year < 100 else 0
        h1, m1 = int(found["h1"]), int(found["m1"] or 0)
        h2, m2 = int(found["h2"]), int(found["m2"] or 0)
        start = datetime(year, month, day, h1, m1, tzinfo=LOCAL_TZ)
        if found["year"] is None and start < local_now - 2 * AHEAD:  # 02.01 said in December: next year
            start = start.replace(year=year + 1)
        end = start.replace(hour=h2, minute=m2) if h2 < 24 else None
    except ValueError:
        raise Invalid(Msg("staff.visit_unreadable", {"text": part[:40], "example": EXAMPLE})) from None
    if end is None or end <= start or end - start > LONGEST:
        hours = int(LONGEST.total_seconds() // 3600)
        raise Invalid(Msg("staff.visit_order", {"text": part[:40], "hours": hours}))
    if start <= now:
        raise Invalid(Msg("staff.visit_past", {"text": part[:40]}))
    if start - now > AHEAD:
        raise Invalid(Msg("staff.visit_far", {"text": part[:40], "days": AHEAD.days}))
    return start.astimezone(UTC), end.astimezone(UTC)


# ---- the subscriber's side ----------------------------------------------------------------------


def detail(visit: VisitView | None, now: datetime) -> tuple[list[Msg], list[Choice]]:
    """What an open application's page adds: the visit agreed, or the windows offered to pick from."""
    if visit is None:
        return [], []
    if visit.chosen is not None:
        return [Msg("visit.agreed", {"window": shown(visit.windows[visit.chosen])})], []
    if visit.declined:
        return [Msg("visit.declined_line")], []
    choices = [
        Choice(f"{PICK}{visit.proposal}:{n}", Msg("visit.window", {"window": shown(window)}))
        for n, window in enumerate(visit.windows)
        if window[0] > now
    ]
    if not choices:
        return [], []
    return [Msg("visit.offered")], [*choices, Choice(f"{NONE}{visit.proposal}", Msg("visit.none"))]


def summary(visit: VisitView | None, now: datetime) -> Msg | None:
    """The visit in one line, where there are no buttons to pick with (the status page): the one
    agreed, the times offered and still ahead (to be picked in the chat), or none of them suiting."""
    if visit is None:
        return None
    if visit.chosen is not None:
        return Msg("visit.agreed", {"window": shown(visit.windows[visit.chosen])})
    if visit.declined:
        return Msg("visit.declined_line")
    ahead = [shown(window) for window in visit.windows if window[0] > now]
    return Msg("page.visit_offered", {"windows": "; ".join(ahead)}) if ahead else None


def why_not(app: ApplicationView | None, choice: str, now: datetime) -> Msg | None:
    """Why a visit button not shown any more may not be pressed; None: not a visit button."""
    if not choice.startswith((PICK, NONE)):
        return None
    if app is None:
        return Msg("app.not_found")
    if not app.open:
        return Msg("visit.closed", {"number": app.number})
    visit = app.visit
    proposal, _, index = choice.removeprefix(PICK).removeprefix(NONE).partition(":")
    if visit is None or str(visit.proposal) != proposal:
        return Msg("visit.replaced")
    if visit.chosen is not None:
        return Msg("visit.already", {"window": shown(visit.windows[visit.chosen])})
    if visit.declined:
        return Msg("visit.declined_already")
    if index.isdigit() and int(index) < len(visit.windows) and visit.windows[int(index)][0] <= now:
        return Msg("visit.past")
    return None


def is_visit(choice: str) -> bool:
    return choice.startswith((PICK, NONE))


async def on_choice(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    """A window picked, or none of them: stored once for this proposal, the thread told."""
    if not isinstance(event, Pressed):
        raise Invalid(Msg("error.use_buttons"))
    app_id = state.data.get("view_app")
    app = (
        await ctx.applications.get_mine(ctx.subscriber, identify.confirmed(state), app_id)
        if isinstance(app_id, int)
        else None
    )
    if app is None:
        return state.go(Step.MY_LIST), (note("app.not_found"),)
    if event.choice.startswith(NONE):
        proposal, index = event.choice.removeprefix(NONE), None
    else:
        proposal, _, number = event.choice.removeprefix(PICK).partition(":")
        index = int(number) if number.isdigit() else -1
    if not proposal.isdigit():
        raise Invalid(Msg("error.stale_button"))
    done = await ctx.applications.choose_visit(app.id, int(proposal), index)
    if done.outcome == "ok" and done.window is not None:
        return state, (note("visit.confirmed", number=app.number, window=shown(done.window)),)
    if done.outcome == "declined":
        return state, (note("visit.declined", number=app.number),)
    # Lost a race with another chat, staff or the clock: say what happened, as a stale button would.
    again = await ctx.applications.get_mine(ctx.subscriber, identify.confirmed(state), app.id)
    return state, (Message((why_not(again, event.choice, ctx.now) or Msg("error.stale_button"),)),)
