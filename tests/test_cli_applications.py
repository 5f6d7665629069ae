"""`isiqbot applications list | show | set-status` on a real database, on applications filed by chat."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.core.departments import Departments
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.core.settings import Settings
from bot.staff.cli import add_applications_parser, cmd_applications, deadlines
from locales import LOCAL_TZ, Msg, translate
from storage import applications, outbox, staff
from storage import visits as visit_rows
from storage.db import Database
from storage.models import Application, Notification, StatusChange
from tests.chat import (
    BOTH,
    LANDLORD,
    PLAIN,
    PLAIN_CODE,
    Chat,
    SmsRecorder,
    choose_account,
    fill_residential,
    identify,
)
from tests.conftest import Clock

ROOT = Path(__file__).parents[1]
ACTOR = "Aysel Məmmədova"
NUMBER = re.compile(r"TX-\d{4}-\d{6}")


def parse(*argv: str) -> argparse.Namespace:
    """As `isiqbot applications …` will parse it, once cli.py adds the parser."""
    parser = argparse.ArgumentParser(prog="isiqbot")
    commands = parser.add_subparsers(dest="command", required=True)
    add_applications_parser(commands)
    return parser.parse_args(["applications", *argv])


async def run(settings: Settings, *argv: str, clock: Clock | None = None) -> int:
    return await cmd_applications(settings, parse(*argv), now=clock() if clock else None)


async def file(chat: Chat, phone: str = PLAIN) -> str:
    """A residential application sent through the dialog; its number."""
    await fill_residential(chat, phone)
    found = NUMBER.search(await chat.press("send"))
    assert found, chat.text
    return found.group()


async def file_another(service: Conversations, user: str, phone: str = PLAIN) -> str:
    return await file(Chat(service, user=user), phone)


async def application(db: Database, number: str) -> Application:
    async with db.transaction() as session:
        found = await applications.by_number(session, number)
    assert found is not None
    return found


async def trail(db: Database, number: str) -> tuple[list[StatusChange], list[Notification]]:
    app = await application(db, number)
    assert app.id is not None
    async with db.transaction() as session:
        history = (await applications.histories(session, [app.id]))[app.id]
        notifications = list(await outbox.for_application(session, app.id))
    # The subscriber's chat messages; the SMS and e-mails of registration and result are tested elsewhere.
    return history, [n for n in notifications if n.channel not in (outbox.SMS, outbox.EMAIL)]


def rows(out: str) -> list[list[str]]:
    """The table's lines under the header, split into cells (cells may hold single spaces)."""
    lines = out.splitlines()
    assert lines[0].split() == [
        "NUMBER",
        "STATUS",
        "DEPARTMENT",
        "ACCOUNT",
        "CREATED",
        "AGE",
        "ASSIGNEE",
        "SLA",
    ]
    return [re.split(r" {2,}", line.strip()) for line in lines[1:]]


# ---- list ------------------------------------------------------------------------------------------


async def test_list_shows_the_open_applications_oldest_first(
    settings: Settings, service: Conversations, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await file_another(service, "u1")
    clock.advance(hours=1)
    done = await file_another(service, "u2")
    clock.advance(hours=1)
    taken = await file_another(service, "u3")
    assert await run(settings, "set-status", done, "in_progress", "--actor", ACTOR, clock=clock) == 0
    assert (
        await run(settings, "set-status", done, "completed", "--note", "Bərpa olundu", "--actor", ACTOR) == 0
    )
    assert await run(settings, "set-status", taken, "in_progress", "--actor", ACTOR, clock=clock) == 0
    capsys.readouterr()
    clock.advance(minutes=30)

    assert await run(settings, "list", clock=clock) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert rows(out) == [
        [first, "registered", "—", PLAIN_CODE, "27.11.2026 13:00", "2h 30m", "—"],
        [taken, "in_progress", "—", PLAIN_CODE, "27.11.2026 15:00", "30m", "—"],
    ]
    header, line = out.splitlines()[0], out.splitlines()[1]
    assert header.index("STATUS") == line.index("registered")  # aligned under the header

    assert await run(settings, "list", "--status", "all", clock=clock) == 0
    assert [r[0] for r in rows(capsys.readouterr().out)] == [taken, done, first]  # newest first

    assert await run(settings, "list", "--status", "completed", clock=clock) == 0
    assert [r[:2] for r in rows(capsys.readouterr().out)] == [[done, "completed"]]

    assert await run(settings, "list", "--status", "registered", "--limit", "5", clock=clock) == 0
    assert [r[0] for r in rows(capsys.readouterr().out)] == [first]

    assert await run(settings, "list", "--status", "all", "--limit", "2", clock=clock) == 0
    out = capsys.readouterr().out
    assert [r[0] for r in rows(out.rsplit("\n(", 1)[0])] == [taken, done]
    assert out.endswith("(the first 2 shown; --limit N shows more)\n")


async def test_no_applications_is_said_and_is_not_an_error(
    settings: Settings, chat: Chat, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(settings, "list") == 0
    assert capsys.readouterr().out == "no applications\n"
    await file(chat)
    assert await run(settings, "list", "--status", "cancelled") == 0
    assert await run(settings, "list", "--department", "baki") == 0  # no department serves it here
    assert capsys.readouterr() == ("no applications\nno applications\n", "")


async def test_list_by_department(
    settings: Settings,
    sample_db: Database,
    sms: SmsRecorder,
    clock: Clock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    departments = Departments.load(ROOT / "departments.example.toml", None)
    service = Conversations(sample_db, sms, clock=clock, policy=StaffPolicy(departments=departments))
    baku = await file_another(service, "u1", PLAIN)  # Yasamal
    ganja = await file_another(service, "u2", BOTH)  # Gəncə

    assert await run(settings, "list", "--department", "gence", clock=clock) == 0
    assert [r[:3] for r in rows(capsys.readouterr().out)] == [[ganja, "registered", "gence"]]
    assert await run(settings, "list", "--department", "baki", "--status", "all", clock=clock) == 0
    assert [r[:3] for r in rows(capsys.readouterr().out)] == [[baku, "registered", "baki"]]
    assert await run(settings, "list", "--department", "cenub", clock=clock) == 0
    assert capsys.readouterr().out == "no applications\n"


async def test_the_overdue_mark_follows_both_deadlines(
    settings: Settings,
    chat: Chat,
    clock: Clock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    number = await file(chat)

    async def mark() -> str:
        assert await run(settings, "list", clock=clock) == 0
        [row] = rows(capsys.readouterr().out)
        return " ".join(row[7:])  # the SLA column, empty unless overdue

    clock.advance(hours=3, minutes=59)
    assert await mark() == ""  # within the 4 hours to take it
    clock.advance(hours=1)
    assert await mark() == "OVERDUE"  # registered, nobody took it
    assert await run(settings, "set-status", number, "in_progress", "--actor", ACTOR, clock=clock) == 0
    capsys.readouterr()
    assert await mark() == ""  # taken: only the 5 days to a result count now
    clock.advance(days=5)
    assert await mark() == "OVERDUE"
    assert await run(settings, "show", number, clock=clock) == 0
    assert "Due:            02.12.2026 13:00  OVERDUE" in capsys.readouterr().out

    monkeypatch.setenv("SLA_DONE_DAYS", "10")
    settings = Settings(env_file=None)
    assert await mark() == ""


def test_the_deadlines_come_from_the_settings_else_4_hours_and_5_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SLA_TAKE_HOURS", "SLA_DONE_DAYS"):
        monkeypatch.delenv(name, raising=False)
    default = deadlines(Settings(env_file=None))
    assert (default.take_within, default.done_within) == (timedelta(hours=4), timedelta(days=5))
    monkeypatch.setenv("SLA_TAKE_HOURS", "2")
    monkeypatch.setenv("SLA_DONE_DAYS", "3")
    given = deadlines(Settings(env_file=None))
    assert (given.take_within, given.done_within) == (timedelta(hours=2), timedelta(days=3))


# ---- show ------------------------------------------------------------------------------------------


async def test_show_gives_staff_everything_with_contacts_in_full(
    settings: Settings, chat: Chat, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    await identify(chat, PLAIN)
    await choose_account(chat)  # PLAIN has one account: it is taken without a question
    await chat.press("reason:no_power")
    await chat.type("Mənzildə səhərdən işıq yoxdur,\nqonşularda var.")
    await chat.photo("photo-123")
    await chat.location(40.3777, 49.892)
    await chat.press("done")
    await chat.type("012 498 76 54")  # at the contacts: the mobile is there, so a second number
    await chat.type("elcin.m@example.az")
    await chat.press("ok")
    found = NUMBER.search(await chat.press("send"))
    assert found
    number = found.group()
    clock.advance(hours=2)

    assert await run(settings, "show", number, clock=clock) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert await run(settings, "show", "1", clock=clock) == 0  # by its serial
    assert capsys.readouterr().out == out
    assert await run(settings, "show", number.lower(), clock=clock) == 0
    assert capsys.readouterr().out == out
    expected = [
        f"Number:         {number}",
        "Status:         registered (registered)",
        "Kind:           residential",
        f"Account:        {PLAIN_CODE}",
        "Metering point: —",
        "Address:        Bakı şəhəri, Yasamal rayonu, Məhəmməd Hadi küçəsi 9, mənzil 34",
        "Region:         Yasamal",
        "Department:     —",
        "Reason:         🔌 No power at my premises (no_power)",
        "Description:    Mənzildə səhərdən işıq yoxdur,",
        "                qonşularda var.",
        "Photo:          photo-123",
        "Attachments:    1 photo",
        "Location:       40.3777, 49.892",
        "Mobile:         +994 99 651 00 79",
        "Extra phones:   +994 12 498 76 54",
        "E-mail:         elcin.m@example.az",
        "Applicant:      +994 99 651 00 79 (the verified phone)",
        "Channel:        test, chat u1, language az",
        "Created:        27.11.2026 13:00 (2h 0m ago)",
        "Due:            02.12.2026 13:00",
        "Assignee:       —",
        "Result:         —",
        "Visit:          —",
        "",
        "History:",
        "  27.11.2026 13:00  — → registered  subscriber:test",
        "",
        "Staff actions:",
        "  —",
        "",
        "Notifications:",
        "  27.11.2026 13:00  sms_registered  to sms  queued  attempts 0",
        "  27.11.2026 13:00  email_registered  to email  queued  attempts 0",
    ]
    assert out.splitlines() == expected
    assert "***" not in out  # nothing masked: this is for staff


async def test_show_gives_the_visit_offered_or_agreed(
    settings: Settings, chat: Chat, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    await fill_residential(chat)
    found = NUMBER.search(await chat.press("send"))
    assert found
    windows = [(datetime(2026, 11, 28, 10, tzinfo=LOCAL_TZ), datetime(2026, 11, 28, 12, tzinfo=LOCAL_TZ))]
    async with chat.service.db.transaction() as session:
        await visit_rows.propose(session, 1, windows, "staff:Rauf", clock())
    assert await run(settings, "show", found.group(), clock=clock) == 0
    visit = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Visit:")]
    assert visit == ["Visit:          Times proposed: 28.11 10:00–12:00 (awaiting the subscriber)"]


async def test_show_lists_the_history_the_staff_actions_and_the_notifications(
    settings: Settings, sample_db: Database, chat: Chat, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    number = await file(chat)
    clock.advance(hours=1)
    assert await run(settings, "set-status", number, "in_progress", "--actor", ACTOR, clock=clock) == 0
    clock.advance(hours=1)
    note = "Kabel dəyişdirildi"
    assert (
        await run(settings, "set-status", number, "completed", "--note", note, "--actor", ACTOR, clock=clock)
        == 0
    )
    app = await application(sample_db, number)
    assert app.id is not None
    async with sample_db.transaction() as session:
        staff.audit(
            session,
            chat_id=-1001000000001,
            user_id=100001,
            user_name="Rauf Quliyev",
            action="take",
            allowed=False,
            now=clock(),
            application_id=app.id,
            detail="not in the department's staff",
        )
        first = next(n for n in await outbox.for_application(session, app.id) if n.kind == "status")
        assert first.id is not None
        await outbox.retry_later(session, first.id, "chat not found", clock() + timedelta(minutes=5))
    capsys.readouterr()

    assert await run(settings, "show", number, clock=clock) == 0
    out = capsys.readouterr().out
    assert "Status:         completed (completed)" in out
    assert f"Result:         {note}" in out
    history = out.split("History:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert history == [
        "  27.11.2026 13:00  — → registered  subscriber:test",
        f"  27.11.2026 14:00  registered → in_progress  cli:{ACTOR}",
        f"  27.11.2026 15:00  in_progress → completed  cli:{ACTOR}  {note}",
    ]
    actions = out.split("Staff actions:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert actions == [
        "  27.11.2026 15:00  take  REFUSED  Rauf Quliyev (id 100001)  not in the department's staff"
    ]
    notifications = out.split("Notifications:\n", 1)[1].splitlines()
    assert notifications == [
        "  27.11.2026 13:00  sms_registered  to sms  queued  attempts 0",
        "  27.11.2026 14:00  status  to test  queued  attempts 0  last error: chat not found",
        "  27.11.2026 15:00  sms_result  to sms  queued  attempts 0",
        "  27.11.2026 15:00  status  to test  queued  attempts 0",
    ]


async def test_show_an_unknown_or_malformed_number(
    settings: Settings, chat: Chat, capsys: pytest.CaptureFixture[str]
) -> None:
    await file(chat)
    for ref in ("TX-2026-000099", "99", "tx-2025-000001"):
        assert await run(settings, "show", ref) == 1
        out, err = capsys.readouterr()
        assert out == "" and err == f"isiqbot: {ref.upper()}: No application has this number.\n"
    for ref in ("abc", "TX-2026-1", "1234567", "١", "1; DROP TABLE application", "\x1b[2J", ""):
        assert await run(settings, "show", ref) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("isiqbot: not an application number: ") and err.count("\n") == 1
        assert "\x1b" not in err


async def test_show_strips_control_characters_from_stored_text(
    settings: Settings, sample_db: Database, chat: Chat, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    number = await file(chat)
    hostile = "Birinci sətir\x1b[2J\x1b]0;pwned\x07\rİkinci\nÜçüncü\u202eters\ttab\x00\x9b31m"
    async with sample_db.transaction() as session:
        app = await applications.by_number(session, number)
        assert app is not None
        app.description = hostile.replace("\x00", "")  # PostgreSQL stores no NUL
        app.address = "Küçə\x1b[31m qırmızı"
    note = "Tapşırıldı\x1b[1A\x1b[2K"
    assert (
        await run(
            settings, "set-status", number, "in_progress", "--note", note, "--actor", ACTOR, clock=clock
        )
        == 0
    )
    capsys.readouterr()

    assert await run(settings, "show", number, clock=clock) == 0
    out = capsys.readouterr().out
    assert [ch for ch in out if (ch < " " and ch != "\n") or "\x7f" <= ch <= "\x9f" or ch == "\u202e"] == []
    assert "Description:    Birinci sətir[2J]0;pwnedİkinci\n                Üçüncüters tab31m" in out
    assert "Address:        Küçə[31m qırmızı" in out
    assert "registered → in_progress  cli:Aysel Məmmədova  Tapşırıldı[1A[2K" in out
    # What set-status stored is clean as well: the subscriber's message carries no escapes either.
    history, _ = await trail(sample_db, number)
    assert history[-1].note == "Tapşırıldı[1A[2K"


# ---- set-status ------------------------------------------------------------------------------------


async def test_set_status_in_progress(
    settings: Settings, sample_db: Database, chat: Chat, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    number = await file(chat)
    clock.advance(minutes=20)
    assert await run(settings, "set-status", "1", "in_progress", "--actor", ACTOR, clock=clock) == 0
    assert capsys.readouterr() == (f"{number} is now: in progress\n", "")
    assert (await application(sample_db, number)).status == "in_progress"
    history, notifications = await trail(sample_db, number)
    last = history[-1]
    assert (last.old_status, last.new_status, last.actor, last.note) == (
        "registered",
        "in_progress",
        f"cli:{ACTOR}",
        None,
    )
    assert [(n.kind, n.channel, n.user_key, n.state) for n in notifications] == [
        ("status", "test", "u1", "queued")
    ]
    assert notifications[0].payload["key"] == "notify.status"


async def test_completed_with_a_note_queues_the_subscribers_message(
    settings: Settings, sample_db: Database, chat: Chat, capsys: pytest.CaptureFixture[str]
) -> None:
    number = await file(chat)
    assert await run(settings, "set-status", number, "in_progress", "--actor", ACTOR) == 0
    note = "  Sayğac və kabel dəyişdirildi  "
    assert await run(settings, "set-status", number, "completed", "--note", note, "--actor", ACTOR) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{number} is now: completed"
    app = await application(sample_db, number)
    assert (app.status, app.result) == ("completed", "Sayğac və kabel dəyişdirildi")
    _, notifications = await trail(sample_db, number)
    last = notifications[-1]
    assert (last.kind, last.channel, last.user_key, last.state) == ("status", "test", "u1", "queued")
    assert last.payload == {
        "key": "notify.status_result",
        "params": {
            "number": number,
            "status": {"$msg": "status.completed"},
            "result": "Sayğac və kabel dəyişdirildi",
        },
    }


@pytest.mark.parametrize("note", [None, "", "   "])
async def test_completed_without_a_note_changes_nothing(
    settings: Settings, sample_db: Database, chat: Chat, capsys: pytest.CaptureFixture[str], note: str | None
) -> None:
    number = await file(chat)
    assert await run(settings, "set-status", number, "in_progress", "--actor", ACTOR) == 0
    capsys.readouterr()
    before = await trail(sample_db, number)
    note_args = ("--note", note) if note is not None else ()
    assert await run(settings, "set-status", number, "completed", *note_args, "--actor", ACTOR) == 1
    assert capsys.readouterr() == ("", f"isiqbot: {number}: «completed» needs a result text.\n")
    assert (await application(sample_db, number)).status == "in_progress"
    after = await trail(sample_db, number)
    assert [c.id for c in after[0]] == [c.id for c in before[0]]
    assert [n.id for n in after[1]] == [n.id for n in before[1]]


async def test_an_illegal_transition_is_explained_and_refused(
    settings: Settings, sample_db: Database, chat: Chat, capsys: pytest.CaptureFixture[str]
) -> None:
    number = await file(chat)
    assert await run(settings, "set-status", number, "completed", "--note", "Hazırdır", "--actor", ACTOR) == 1
    assert capsys.readouterr().err == (
        f"isiqbot: {number}: An application that is «registered» cannot become «completed».\n"
    )
    assert await run(settings, "set-status", number, "in_progress", "--actor", ACTOR) == 0
    assert await run(settings, "set-status", number, "completed", "--note", "Hazırdır", "--actor", ACTOR) == 0
    capsys.readouterr()
    before = await trail(sample_db, number)

    assert await run(settings, "set-status", number, "in_progress", "--actor", ACTOR) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"isiqbot: {number}: An application that is «completed» cannot become «in progress».\n"
    assert (await application(sample_db, number)).status == "completed"
    after = await trail(sample_db, number)
    assert (len(after[0]), len(after[1])) == (len(before[0]), len(before[1]))


async def test_set_status_of_an_unknown_number(
    settings: Settings, chat: Chat, capsys: pytest.CaptureFixture[str]
) -> None:
    await file(chat)
    assert await run(settings, "set-status", "TX-2026-000042", "in_progress", "--actor", ACTOR) == 1
    assert capsys.readouterr() == ("", "isiqbot: TX-2026-000042: No application has this number.\n")
    assert await run(settings, "set-status", "TX-42", "in_progress", "--actor", ACTOR) == 1
    assert "not an application number: 'TX-42'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["set-status", "1", "in_progress"],  # who did it goes into the audit trail
        ["set-status", "1", "in_progress", "--actor", ""],
        ["set-status", "1", "in_progress", "--actor", " \x1b "],
        ["set-status", "1", "in_progress", "--actor", "x" * 61],
        ["set-status", "1", "cancelled", "--actor", ACTOR],  # the subscriber's to do, not staff's
        ["set-status", "1", "registered", "--actor", ACTOR],
        ["set-status", "1", "--actor", ACTOR],
        ["list", "--status", "closed"],
        ["list", "--limit", "0"],
        ["list", "--limit", "many"],
        ["show"],
        [],
    ],
)
def test_bad_arguments_stop_at_the_parser(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(*argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_the_parser_reads_each_command() -> None:
    args = parse("set-status", "TX-2026-000001", "completed", "--note", "Bitdi", "--actor", "  Aysel  ")
    assert (args.command, args.applications_command, args.number, args.status) == (
        "applications",
        "set-status",
        "TX-2026-000001",
        "completed",
    )
    assert (args.note, args.actor) == ("Bitdi", "Aysel")
    args = parse("list")
    assert (args.status, args.department, args.limit) == ("open", None, 100)


# ---- the database away -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/isiqbot",
        "postgresql+asyncpg://postgres:s3cret@127.0.0.1:5432/isiqbot_no_such_database",
    ],
)
async def test_an_unreachable_database_is_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    settings = Settings(env_file=None)
    for argv in (["list"], ["show", "1"], ["set-status", "1", "in_progress", "--actor", ACTOR]):
        assert await run(settings, *argv) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(
            "isiqbot: cannot open the database postgresql+asyncpg://postgres:***@127.0.0.1:"
        )
        assert err.count("\n") == 1 and "s3cret" not in err and "Traceback" not in err


async def test_a_database_file_that_cannot_be_made_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'not-a-folder' / 'isiqbot.db'}")
    assert await run(Settings(env_file=None), "list") == 1
    err = capsys.readouterr().err
    assert err.startswith("isiqbot: cannot open the database sqlite+aiosqlite:///") and err.count("\n") == 1
    (tmp_path / "junk.db").write_bytes(b"this is no database file, but long enough to be read as one" * 100)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'junk.db'}")
    assert await run(Settings(env_file=None), "show", "1") == 1
    err = capsys.readouterr().err
    assert err.endswith(": file is not a database\n") and err.count("\n") == 1


# ---- link: a duplicate follows the main application ----------------------------------------------


async def test_link_closes_the_duplicate_and_its_subscriber_follows_the_main_one(
    settings: Settings, service: Conversations, capsys: pytest.CaptureFixture[str]
) -> None:
    main = await file_another(service, "main")
    neighbour = Chat(service, user="neighbour")
    await neighbour.start(hint="ru")
    duplicate = await file(neighbour, LANDLORD)  # another account, the same fault (say, one cable)

    assert await run(settings, "link", duplicate, "--to", main, "--actor", "Rauf") == 0
    assert capsys.readouterr().out.strip() == f"{duplicate} is now: rejected, a duplicate of {main}"
    closed = await application(service.db, duplicate)
    assert closed.status == "rejected"
    assert closed.result == translate(Msg("duplicate.linked", {"number": main}), "ru")  # their language

    assert await run(settings, "set-status", main, "in_progress", "--actor", "Rauf") == 0
    _, sent = await trail(service.db, main)
    news = [(n.user_key, n.lang) for n in sent if n.kind == "status"]
    assert ("main", "az") in news and ("neighbour", "ru") in news  # the follower hears the main one

    for argv, says in [
        (("link", main, "--to", main), "cannot be a duplicate of itself"),
        (("link", duplicate, "--to", main), "rejected"),  # closed already: the lifecycle says no
        (("link", "TX-2026-999999", "--to", main), "no application has this number"),
        (("link", main, "--to", "nonsense"), "not an application number"),
    ]:
        assert await run(settings, *argv, "--actor", "Rauf") == 1
        assert says in capsys.readouterr().err.lower()

    assert (
        await run(settings, "set-status", main, "completed", "--note", "Kabel dəyişdirildi.", "--actor", "R")
        == 0
    )
    third = await file_another(service, "third", BOTH)
    assert await run(settings, "link", third, "--to", main, "--actor", "Rauf") == 1
    assert f"application {main} is already closed".lower() in capsys.readouterr().err.lower()
