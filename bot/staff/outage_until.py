"""When power is expected back, as staff type it (Baku time): read once for the shell and the staff chat.

`isiqbot outages add --until …` and the staff chat's `/outage <region> <until>` both read it here, so
the formats and the rules (ahead, and within MAX_AHEAD) are the same wherever an outage is declared;
each says a refusal its own way (an English line, a localised answer).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from locales import LOCAL_TZ

MAX_AHEAD = timedelta(days=14)  # an expected end further than this is a typing mistake
TIME_FORMATS = ("%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M", "%H:%M")
_DAY_MONTH = re.compile(r"^(?P<day>\d{1,2})\.(?P<month>\d{1,2}) (?P<hour>\d{1,2}):(?P<minute>\d{2})$")
# The start of a two-word time (2026-12-01 18:30, 01.12.2026 18:30, 01.12 18:30): its day.
DAY_WORD = re.compile(r"^(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}(?:\.\d{4})?)$")


class UntilError(ValueError):
    """A time that cannot be the expected end: `reason` is "format", "past" or "far"."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(f"{reason}: {text!r}")
        self.reason = reason
        self.text = text


def parse_until(value: str, now: datetime) -> datetime:
    """A Baku time staff typed, as UTC: a bare HH:MM is the next such moment, a DD.MM without a year
    the nearest such day. Raises UntilError when it cannot be read, is past, or is too far ahead."""
    text = " ".join(value.split())
    local_now = now.astimezone(LOCAL_TZ)
    parsed = _day_month(text, local_now)
    for fmt in TIME_FORMATS if parsed is None else ():
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt == "%H:%M":
            parsed = datetime.combine(local_now.date(), parsed.time())
            if parsed.replace(tzinfo=LOCAL_TZ) <= local_now:
                parsed += timedelta(days=1)
        break
    if parsed is None:
        raise UntilError("format", text)
    until = parsed.replace(tzinfo=LOCAL_TZ).astimezone(UTC)
    if until <= now:
        raise UntilError("past", text)
    if until > now + MAX_AHEAD:
        raise UntilError("far", text)
    return until


def _day_month(text: str, local_now: datetime) -> datetime | None:
    """01.12 18:30 in the year that puts it nearest to now (so 02.01 typed on 30.12 is next year's)."""
    match = _DAY_MONTH.fullmatch(text)
    if match is None:
        return None
    day, month, hour, minute = (int(match[name]) for name in ("day", "month", "hour", "minute"))
    candidates = []
    for year in (local_now.year - 1, local_now.year, local_now.year + 1):
        try:
            candidates.append(datetime(year, month, day, hour, minute))
        except ValueError:  # 31.04, 29.02 of a common year, 25:00
            continue
    naive_now = local_now.replace(tzinfo=None)
    return min(candidates, key=lambda moment: abs(moment - naive_now), default=None)
