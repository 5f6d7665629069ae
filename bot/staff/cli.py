"""`isiqbot applications list | show | set-status`: staff work on applications from a shell.

Reading is plain text for a terminal (and for `grep`); changing goes through `StaffDesk.set_status`, so
the lifecycle is checked, the change is recorded with its actor, and the subscriber's message is queued
(it leaves when `isiqbot run` is running), exactly as from the staff chat.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from bot.core.settings import Settings, SettingsError
from bot.staff import export
from bot.staff.desk import REF, StaffDesk, card_visit, refusal
from dialogs import attachments
from dialogs.lifecycle import ALLOWED_BY, OPEN, IllegalTransition, Role, Status
from dialogs.validate import display_phone
from locales import LOCAL_TZ, Msg, translate
from storage import outages, outbox, staff
from storage.applications import account_label
from storage.db import Database, as_utc
from storage.migrate import upgrade
from storage.models import Application, Notification, StaffAction, StatusChange

LANG = "en"  # the language of this command's output
STATUS_FILTERS = (*(s.value for s in Status), "open", "all")
SETTABLE = tuple(s.value for s in Status if s in ALLOWED_BY[Role.STAFF])  # in lifecycle order
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
ACTOR_MAX = 60  # "cli:" + the name fits the 64 characters of StatusChange.actor
NONE = "—"
# Bidirectional overrides can make a line read differently from what it holds (as in dialogs/validate.py).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# What may fail when the database is away or is not ours: one line on stderr, never a traceback.
DATABASE_ERRORS = (OSError, TimeoutError, SQLAlchemyError, CommandError)


class CliError(Exception):
    """Bad input or settings, said in one line."""


# ---- the deadlines ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deadlines:
    take_within: timedelta  # a registered application nobody took is late after this
    done_within: timedelta  # an open application without a result is late after this


def deadlines(settings: Settings) -> Deadlines:
    """SLA_TAKE_HOURS and SLA_DONE_DAYS, as the settings read them (4 hours and 5 days by default)."""
    return Deadlines(
        timedelta(hours=settings.staff.sla_take_hours), timedelta(days=settings.staff.sla_done_days)
    )


# ---- text for a terminal ---------------------------------------------------------------------------


def clean(text: str) -> str:
    """Stored text made safe to print: no control characters but the newline (so no ANSI escapes, no
    carriage returns that overwrite a line), no bidirectional overrides; a tab becomes a space."""
    kept: list[str] = []
    for ch in text.replace("\r\n", "\n"):
        if ch == "\n":
            kept.append(ch)
        elif ch == "\t":
            kept.append(" ")
        elif ch not in _BIDI_CONTROLS and unicodedata.category(ch) not in ("Cc", "Cs"):
            kept.append(ch)
    return "".join(kept)


def cell(text: str | None) -> str:
    """One table cell: clean, on one line, "—" when empty."""
    value = " ".join(clean(text or "").split())
    return value or NONE


def local_time(value: datetime) -> str:
    """27.11.2026 13:00, in Baku."""
    return as_utc(value).astimezone(LOCAL_TZ).strftime("%d.%m.%Y %H:%M")


def age(since: datetime, now: datetime) -> str:
    """5d 3h, 4h 10m or 12m."""
    minutes = max(int((now - as_utc(since)).total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def status_name(status: str) -> str:
    return translate(Msg(f"status.{status}"), LANG)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)
    ]


def _attached(app: Application) -> str | None:
    """What the subscriber attached, in words (the files stay in their chats)."""
    found = attachments.summary(attachments.of_application(app.photo_ref, app.attachments))
    return translate(found, LANG) if found is not None else None


def _field(label: str, value: str | None) -> str:
    """`Label:          value`, a value of several lines indented under the first."""
    text = clean(value).strip("\n") if value else ""
    lines = text.split("\n") if text else [NONE]
    pad = " " * 16
    return f"{label + ':':<16}{lines[0]}" + "".join(f"\n{pad}{line}" for line in lines[1:])


# ---- the parser ------------------------------------------------------------------------------------


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}")
    return number


def actor_name(value: str) -> str:
    name = " ".join(clean(value).split())
    if not name:
        raise argparse.ArgumentTypeError("must name who makes the change")
    if len(name) > ACTOR_MAX:
        raise argparse.ArgumentTypeError(f"at most {ACTOR_MAX} characters")
    return name


def one_line(limit: int) -> argparse._ActionType:
    """An argument of one line: spaces collapsed, not empty, at most `limit` characters."""

    def check(value: str) -> str:
        text = " ".join(clean(value).split())
        if not text:
            raise argparse.ArgumentTypeError("must not be empty")
        if len(text) > limit:
            raise argparse.ArgumentTypeError(f"at most {limit} characters")
        return text

    return check


async def registry_region(session: AsyncSession, typed: str) -> str:
    """The registry's name of the region staff typed, in any case; else the regions it has."""
    match, known = await outages.region_named(session, typed)
    if match is None:
        listed = ", ".join(known[:30]) or "none: import the registry first"
        raise CliError(f"no region {typed!r} in the registry (it has: {listed})")
    return match


def add_applications_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`applications` and its commands, under the `isiqbot` command's subparsers."""
    apps = commands.add_parser("applications", help="staff: list, show and change applications")
    sub = apps.add_subparsers(dest="applications_command", required=True, metavar="COMMAND")

    listing = sub.add_parser(
        "list",
        help="applications, one a line",
        description="Open applications oldest first; closed ones and --status all newest first.",
    )
    listing.add_argument(
        "--status",
        choices=STATUS_FILTERS,
        default="open",
        help="which applications (default open: registered and in progress)",
    )
    listing.add_argument("--department", metavar="KEY", help="only this department's (its key, e.g. baki)")
    listing.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N (default {DEFAULT_LIMIT})",
    )

    show = sub.add_parser("show", help="one application in full, with its history and messages")
    show.add_argument("number", metavar="NUMBER", help="TX-2026-000001, or its serial 1")

    change = sub.add_parser(
        "set-status",
        help="change an application's status; the subscriber is told",
        description="The subscriber's message is queued and leaves when `isiqbot run` is running.",
    )
    change.add_argument("number", metavar="NUMBER", help="TX-2026-000001, or its serial 1")
    change.add_argument("status", choices=SETTABLE)
    change.add_argument("--note", help="the result (needed for completed and rejected) or a remark")
    change.add_argument(
        "--actor", type=actor_name, required=True, metavar="NAME", help="who makes the change"
    )

    link = sub.add_parser(
        "link",
        help="a duplicate: close it, and let its subscriber follow the main application",
        description="The duplicate is rejected with the main one named in its result; its chat (and its "
        "followers) get every status news of the main application from now on.",
    )
    link.add_argument("number", metavar="NUMBER", help="the duplicate: TX-2026-000002, or its serial 2")
    link.add_argument("--to", required=True, metavar="MAIN", help="the main application it repeats")
    link.add_argument("--actor", type=actor_name, required=True, metavar="NAME", help="who links them")

    move = sub.add_parser(
        "transfer",
        help="move an open application to another department; its subscriber is told",
        description="Its card moves to that department's chat (nobody assigned), the old card is closed "
        "with a line saying where it went, and the subscriber is told which department has it now.",
    )
    move.add_argument("number", metavar="NUMBER", help="TX-2026-000001, or its serial 1")
    move.add_argument("--to", required=True, metavar="KEY", help="the department's key in DEPARTMENTS_FILE")
    move.add_argument("--actor", type=actor_name, required=True, metavar="NAME", help="who moves it")

    export = sub.add_parser(
        "export",
        help="the applications registered in a period, as CSV or XLSX, for reports",
        description="Personal data is masked unless --full is given; a cell a spreadsheet would run as a "
        "formula is escaped with a leading apostrophe.",
    )
    export.add_argument("--from", dest="first", required=True, type=_day, metavar="DAY", help="the first day")
    export.add_argument("--to", dest="last", required=True, type=_day, metavar="DAY", help="the last day")
    export.add_argument("--format", choices=("csv", "xlsx"), default="csv", help="default csv")
    export.add_argument("--department", metavar="KEY", help="only this department's (its key, e.g. baki)")
    export.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="where to write (csv: standard output by default)"
    )
    export.add_argument("--full", action="store_true", help="phones, e-mails, names and locations in full")


# ---- the commands ----------------------------------------------------------------------------------


async def cmd_applications(
    settings: Settings, args: argparse.Namespace, *, now: datetime | None = None
) -> int:
    """Run `isiqbot applications …`; `now` is for tests (the time deadlines and ages are measured at)."""
    at = now or datetime.now(UTC)
    command = args.applications_command
    try:
        sla = deadlines(settings)
        if command == "export":
            _check_export(args)
        if command in ("show", "set-status", "link", "transfer"):
            _check_ref(args.number)
        if command == "link":
            _check_ref(args.to)
    except CliError as exc:
        return fail(str(exc))

    async def work(db: Database) -> int:
        if command == "list":
            return await _list(db, args.status, args.department, args.limit, at, sla)
        if command == "show":
            return await _show(db, args.number, at, sla)
        if command == "link":
            return await _link(db, args.number, args.to, args.actor, at)
        if command == "transfer":
            return await _transfer(db, settings, args.number, args.to, args.actor, at)
        if command == "export":
            return await _export(db, args)
        return await _set_status(db, args.number, Status(args.status), args.note, args.actor, at)

    return await on_database(settings, work)


async def on_database(settings: Settings, work: Callable[[Database], Awaitable[int]]) -> int:
    """`work` on the migrated database; what fails there is one line on stderr and exit code 1."""
    url = settings.database.database_url
    try:
        db = await open_migrated(url)
    except DATABASE_ERRORS as exc:
        return fail(f"cannot open the database {safe_url(url)}: {reason_of(exc)}")
    try:
        return await work(db)
    except CliError as exc:
        return fail(str(exc))
    except DATABASE_ERRORS as exc:
        return fail(f"database error: {reason_of(exc)}")
    finally:
        await db.dispose()


async def open_migrated(url: str) -> Database:
    """The database, migrated to the newest schema (as every isiqbot command); disposed if that fails."""
    db = Database(url)
    try:
        await upgrade(db.engine)
    except BaseException:
        await db.dispose()
        raise
    return db


async def _list(
    db: Database, which: str, department: str | None, limit: int, now: datetime, sla: Deadlines
) -> int:
    if which == "all":
        statuses: tuple[str, ...] = ()
    elif which == "open":
        statuses = tuple(s.value for s in Status if s in OPEN)
    else:
        statuses = (which,)
    oldest_first = bool(statuses) and all(Status(s) in OPEN for s in statuses)  # a queue: oldest on top
    async with db.transaction() as session:
        rows = await _select(session, statuses, department, limit + 1, oldest_first)
    if not rows:
        print("no applications")
        return 0
    header = ("NUMBER", "STATUS", "DEPARTMENT", "ACCOUNT", "CREATED", "AGE", "ASSIGNEE", "SLA")
    lines = [
        (
            app.number,
            app.status,
            cell(app.department),
            cell(account_label(app)),
            local_time(app.created_at),
            age(app.created_at, now),
            cell(app.assignee_name),
            "OVERDUE" if staff.overdue(app, now, sla.take_within, sla.done_within) else "",
        )
        for app in rows[:limit]
    ]
    for line in table(header, lines):
        print(line)
    if len(rows) > limit:
        print(f"(the first {limit} shown; --limit N shows more)")
    return 0


async def _select(
    session: AsyncSession, statuses: Sequence[str], department: str | None, limit: int, oldest_first: bool
) -> Sequence[Application]:
    query = select(Application)
    if statuses:
        query = query.where(col(Application.status).in_(statuses))
    if department is not None:
        query = query.where(col(Application.department) == department)
    if oldest_first:
        query = query.order_by(col(Application.created_at), col(Application.id))
    else:
        query = query.order_by(col(Application.created_at).desc(), col(Application.id).desc())
    return (await session.scalars(query.limit(limit))).all()


async def _show(db: Database, ref: str, now: datetime, sla: Deadlines) -> int:
    card = await StaffDesk(db).card(ref)
    if card is None or card.application.id is None:
        return _not_found(ref)
    app_id = card.application.id
    async with db.transaction() as session:
        actions = await staff.actions(session, app_id)
        notifications = await outbox.for_application(session, app_id)
        visit = await card_visit(session, app_id)
    lines = [
        *_card_fields(card.application, now, sla),
        _field("Visit", translate(visit, LANG).removeprefix("🗓 ") if visit is not None else None),
        "",
        "History:",
        *_history_lines(card.history),
        "",
        "Staff actions:",
        *_action_lines(actions),
        "",
        "Notifications:",
        *_notification_lines(notifications),
    ]
    print("\n".join(lines))
    return 0


def _card_fields(app: Application, now: datetime, sla: Deadlines) -> list[str]:
    """The application's own fields, one `_field` each, in the order staff read a card."""
    late = staff.overdue(app, now, sla.take_within, sla.done_within)
    location = f"{app.latitude}, {app.longitude}" if app.latitude is not None else None
    return [
        _field("Number", app.number),
        _field("Status", f"{status_name(app.status)} ({app.status})"),
        _field("Kind", app.kind),
        _field("Account", app.account_code),
        _field("Metering point", app.metering_point_code),
        _field("Address", app.address),
        _field("Region", app.region),
        _field("Department", app.department),
        _field("Reason", f"{translate(Msg(f'reason.{app.reason}'), LANG)} ({app.reason})"),
        _field("Description", app.description),
        _field("Photo", app.photo_ref),
        _field("Attachments", _attached(app)),
        _field("Location", location),
        _field("Mobile", display_phone(app.mobile)),
        _field("Extra phones", ", ".join(display_phone(p) for p in app.extra_phones)),
        _field("E-mail", app.email),
        _field("Applicant", f"{display_phone(app.applicant_phone)} (the verified phone)"),
        _field("Channel", f"{app.channel}, chat {app.user_key}, language {app.lang}"),
        _field("Created", f"{local_time(app.created_at)} ({age(app.created_at, now)} ago)"),
        _field("Due", local_time(staff.due_at(app, sla.done_within)) + ("  OVERDUE" if late else "")),
        _field("Assignee", _assignee(app)),
        _field("Result", app.result),
    ]


def _assignee(app: Application) -> str | None:
    """Who took the application and when; None when nobody did."""
    if not app.assignee_name and app.assignee_id is None:
        return None
    taken = f", took it {local_time(app.taken_at)}" if app.taken_at else ""
    return f"{app.assignee_name or NONE} (id {app.assignee_id}{taken})"


def _history_lines(history: Sequence[StatusChange]) -> list[str]:
    lines = []
    for change in history:
        old = change.old_status or NONE
        note = f"  {cell(change.note)}" if change.note else ""
        lines.append(
            f"  {local_time(change.created_at)}  {old} → {change.new_status}  {cell(change.actor)}{note}"
        )
    return lines


def _action_lines(actions: Sequence[StaffAction]) -> list[str]:
    """What staff did or tried to do, refusals included; "—" when nothing."""
    lines = [] if actions else [f"  {NONE}"]
    for action in actions:
        allowed = "allowed" if action.allowed else "REFUSED"
        detail = f"  {cell(action.detail)}" if action.detail else ""
        who = f"{cell(action.user_name)} (id {action.user_id})"
        lines.append(f"  {local_time(action.created_at)}  {cell(action.action)}  {allowed}  {who}{detail}")
    return lines


def _notification_lines(notifications: Sequence[Notification]) -> list[str]:
    """The messages queued about the application and how their sending went; "—" when none."""
    lines = [] if notifications else [f"  {NONE}"]
    for n in notifications:
        error = f"  last error: {cell(n.last_error)}" if n.last_error else ""
        lines.append(
            f"  {local_time(n.created_at)}  {n.kind}  to {n.channel}  {n.state}  attempts {n.attempts}{error}"
        )
    return lines


async def _set_status(
    db: Database, ref: str, status: Status, note: str | None, actor: str, now: datetime
) -> int:
    desk = StaffDesk(db, clock=lambda: now)
    text = clean(note) if note is not None else None
    try:
        app = await desk.set_status(ref, status, actor=f"cli:{actor}", note=text)
    except IllegalTransition as exc:
        if exc.key == "status.error_not_found":
            return _not_found(ref)
        return fail(f"{_shown_ref(ref)}: {translate(refusal(exc), LANG)}")
    print(f"{app.number} is now: {status_name(app.status)}")
    return 0


async def _link(db: Database, ref: str, main_ref: str, actor: str, now: datetime) -> int:
    desk = StaffDesk(db, clock=lambda: now)
    try:
        duplicate, main = await desk.link_duplicate(ref, main_ref, actor=f"cli:{actor}")
    except IllegalTransition as exc:
        if exc.key == "status.error_not_found":
            return fail(f"{_shown_ref(ref)} or {_shown_ref(main_ref)}: {translate(Msg(exc.key), LANG)}")
        return fail(f"{_shown_ref(ref)}: {translate(refusal(exc), LANG)}")
    print(f"{duplicate.number} is now: {status_name(duplicate.status)}, a duplicate of {main.number}")
    return 0


async def _transfer(db: Database, settings: Settings, ref: str, to: str, actor: str, now: datetime) -> int:
    try:
        policy = settings.staff.policy()
    except SettingsError as exc:
        return fail(f"settings: {exc}")
    desk = StaffDesk(db, clock=lambda: now, policy=policy)
    try:
        app, department = await desk.transfer(ref, to.strip().lower(), actor=actor)
    except IllegalTransition as exc:
        if exc.key == "status.error_not_found":
            return _not_found(ref)
        known = ", ".join(d.key for d in desk.departments()) or "none: set DEPARTMENTS_FILE"
        said = translate(refusal(exc), LANG)
        return fail(
            f"{_shown_ref(ref)}: {said}"
            + (f" (departments: {known})" if exc.key == "staff.move_unknown" else "")
        )
    print(f"{app.number} moved to {department.key} ({department.name(LANG)}); its subscriber will be told")
    return 0


def _day(value: str) -> date:
    for fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"not a day: {cell(value)!r} (write 2026-11-01 or 01.11.2026)")


def _check_export(args: argparse.Namespace) -> None:
    if args.last < args.first:
        raise CliError(f"--to {args.last:%Y-%m-%d} is before --from {args.first:%Y-%m-%d}")
    if args.format == "xlsx" and args.output is None:
        raise CliError("--format xlsx needs --output FILE (a workbook is not text for a terminal)")
    if args.output is not None and args.output.is_dir():
        raise CliError(f"--output {args.output} is a folder")


async def _export(db: Database, args: argparse.Namespace) -> int:
    period = export.Period.of_days(args.first, args.last)
    target = args.output
    if args.format == "xlsx":
        partial = target.with_name(target.name + ".partial")
        count = await export.write_xlsx(partial, db, period, args.department, args.full)
        partial.replace(target)  # a file that is there is whole
    elif target is None:
        count = await export.write_csv(sys.stdout, db, period, args.department, args.full)
    else:
        partial = target.with_name(target.name + ".partial")
        with partial.open("w", encoding="utf-8", newline="") as out:
            count = await export.write_csv(out, db, period, args.department, args.full)
        partial.replace(target)
    where = f" to {target}" if target is not None else ""
    kept = "in full: keep the file safe" if args.full else "personal data masked"
    print(f"{count} application(s) exported{where} ({kept})", file=sys.stderr)
    return 0


# ---- errors ----------------------------------------------------------------------------------------


def _shown_ref(ref: str) -> str:
    return ref.strip().upper()


def _check_ref(ref: str) -> None:
    if not REF.fullmatch(ref.strip()):
        raise CliError(f"not an application number: {cell(ref)!r} (give TX-2026-000001, or its serial 1)")


def _not_found(ref: str) -> int:
    return fail(f"{_shown_ref(ref)}: {translate(Msg('status.error_not_found'), LANG)}")


def fail(message: str) -> int:
    print(f"isiqbot: {message}", file=sys.stderr)
    return 1


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable DATABASE_URL)"


def reason_of(exc: BaseException) -> str:
    """The first line of what went wrong (a database error's message holds no bound values)."""
    source = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    for line in str(source).splitlines():
        if line.strip():
            return cell(line)[:300]
    return type(exc).__name__
