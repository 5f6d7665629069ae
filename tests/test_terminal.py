"""The terminal channel: typed lines as events, its rendering, its input, and the demo it runs."""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
from collections.abc import Awaitable, Callable

import pytest

from bot.channels.terminal import (
    CHANNEL,
    DEMO_CHAT_ID,
    DEMO_KEY,
    StdinLines,
    Terminal,
    demo_policy,
    parse_input,
    render,
)
from bot.core.links import LinkSigner, PublicLinks
from bot.core.service import Conversations
from bot.notify.sms import LogSmsGateway, SmsSender
from bot.staff.desk import StaffDesk
from dialogs.events import Command, Contact, Location, Photo, Pressed, Text
from dialogs.lifecycle import Status
from dialogs.replies import Choice, Message, Request
from locales import Msg, translate
from storage import applications, outbox, staff
from storage.db import Database
from storage.models import Application, Notification
from tests.chat import Chat, SmsRecorder, fill_residential
from tests.conftest import Clock

QUESTION = Message(
    (Msg("reason.ask"),),
    (Choice("reason:no_power", Msg("reason.no_power")), Choice("back", Msg("common.back"))),
    request=Request.LOCATION,
)


def test_a_number_presses_that_button_of_the_current_question() -> None:
    assert parse_input("1\n", QUESTION, 7) == Pressed("reason:no_power", 7)
    assert parse_input(" 2 ", QUESTION, 7) == Pressed("back", 7)


def test_numbers_that_are_not_buttons_are_text() -> None:
    for line in ("0", "3", "²", "١", "168808605066007", "-1"):
        assert parse_input(line, QUESTION, 7) == Text(line)


def test_stand_ins_for_platform_buttons() -> None:
    assert parse_input("/contact +994 50 111 22 33", QUESTION, 1) == Contact("+994 50 111 22 33", own=True)
    assert parse_input("/photo sayğac.jpg", QUESTION, 1) == Photo("terminal:sayğac.jpg")
    assert parse_input("/location 40,41 49.87", QUESTION, 1) == Location(40.41, 49.87)
    broken = parse_input("/location here", QUESTION, 1)
    assert isinstance(broken, Location) and math.isnan(broken.latitude)
    assert parse_input("/LANG ru", QUESTION, 1) == Command("lang", "ru")
    assert parse_input("/", QUESTION, 1) == Text("/")


def test_render_numbers_the_choices_and_adds_the_hint() -> None:
    shown = render(QUESTION, "az")
    assert shown.splitlines()[0] == "Müraciətin səbəbini seçin:"
    assert "/location 40.41 49.87" in shown
    assert shown.splitlines()[-2:] == ["  1. 🔌 İşıq yoxdur", "  2. ⬅️ Geri"]


# --- the terminal as the demo runs it: its department, the SMS and e-mails it shows, staff's quotes ----


def typed(*lines: str) -> Callable[[], Awaitable[str]]:
    """A keyboard that types these lines, then ends the input (Ctrl-D)."""
    waiting = [f"{line}\n" for line in lines]

    async def read_line() -> str:
        return waiting.pop(0) if waiting else ""

    return read_line


@pytest.fixture
def demo(sample_db: Database, sms: SmsRecorder, clock: Clock) -> tuple[Conversations, StaffDesk]:
    """The conversation service and the staff desk as `isiqbot chat` builds them."""
    policy = demo_policy()
    return Conversations(sample_db, sms, clock=clock, policy=policy), StaffDesk(sample_db, clock, policy)


async def file_in_terminal(service: Conversations) -> Application:
    """An application sent from the terminal's subscriber, through the dialog as it stands."""
    chat = Chat(service, user="local", channel=CHANNEL)
    await fill_residential(chat)
    found = re.search(r"TX-\d{4}-\d{6}", await chat.press("send"))
    assert found, chat.text
    async with service.db.transaction() as session:
        app = await applications.by_number(session, found.group())
    assert app is not None
    return app


async def test_the_demo_routes_every_application_to_its_own_department(
    demo: tuple[Conversations, StaffDesk], caplog: pytest.LogCaptureFixture
) -> None:
    service, desk = demo
    app = await file_in_terminal(service)
    assert app.department == DEMO_KEY
    assert "has no staff chat" not in caplog.text
    department = service.policy.departments.for_region("Nowhere at all")
    assert department is not None and department.key == DEMO_KEY and department.chat_id == DEMO_CHAT_ID
    assert department.name("en") == "Demo department"
    assert app.id is not None
    async with service.db.transaction() as session:
        assert (await staff.thread(session, app.id)) is not None
    # The staff view is the demo department's chat: its cards are not left waiting in the outbox.
    await Terminal(service, desk, typed("/my"), out=io.StringIO()).run()
    async with service.db.transaction() as session:
        rows = await outbox.for_application(session, app.id)
    assert rows and all(row.state != outbox.QUEUED for row in rows), [(r.channel, r.state) for r in rows]


async def test_the_sms_owed_is_shown_as_it_would_arrive_and_only_once(
    demo: tuple[Conversations, StaffDesk],
) -> None:
    service, desk = demo
    app = await file_in_terminal(service)
    assert app.id is not None
    links = PublicLinks(LinkSigner.ephemeral(), "http://127.0.0.1:8080")
    async with service.db.transaction() as session:
        (sms,) = [row for row in await outbox.for_application(session, app.id) if row.channel == outbox.SMS]
    expected = SmsSender(LogSmsGateway(), links).text(sms)  # what the gateway would be given
    assert links.status_page(app.id) in expected and app.number in expected

    out = io.StringIO()
    await Terminal(service, desk, typed("/my", "/my"), out=out, links=links).run()
    shown = out.getvalue()
    assert f"📩 SMS → +994 99 ***-**-79:\n  {expected}\n" in shown
    assert shown.count("📩 SMS") == 1  # marked sent: the second /my shows it no more
    async with service.db.transaction() as session:
        assert (await session.get(Notification, sms.id)).state == outbox.SENT  # type: ignore[union-attr]


async def test_an_unterminated_quote_is_refused_and_changes_nothing(
    demo: tuple[Conversations, StaffDesk],
) -> None:
    service, desk = demo
    app = await file_in_terminal(service)
    out = io.StringIO()
    await Terminal(service, desk, typed("/staff", "take 1", 'complete 1 "Sayğac dəyişdirildi'), out=out).run()
    assert translate(Msg("terminal.unterminated_quote"), "az") in out.getvalue()
    card = await desk.card(app.number)
    assert card is not None
    assert card.application.status == Status.IN_PROGRESS and card.application.result is None

    out = io.StringIO()
    quoted = "complete 1 \"Sayğac 'Elvin' dəyişdirildi\""  # a quote of the other kind inside is text
    await Terminal(service, desk, typed("/staff", quoted), out=out).run()
    card = await desk.card(app.number)
    assert card is not None
    assert card.application.status == Status.COMPLETED
    assert card.application.result == "Sayğac 'Elvin' dəyişdirildi"
    assert translate(Msg("terminal.unterminated_quote"), "az") not in out.getvalue()


def test_the_quote_message_in_every_language() -> None:
    refused = {lang: translate(Msg("terminal.unterminated_quote"), lang) for lang in ("az", "ru", "en")}
    assert refused["en"] == 'A quote is not closed: put the text in "…".'
    assert refused["ru"] == 'Кавычки не закрыты: возьмите текст в кавычки "…".'


async def test_stdin_lines_from_a_pipe_split_characters_and_the_end_of_input() -> None:
    read_fd, write_fd = os.pipe()
    lines = StdinLines(read_fd)
    try:
        cut = "birinci\nsə".encode()
        os.write(write_fd, cut[:-1])  # "ə" is two bytes: the first arrives alone
        assert await lines() == "birinci\n"
        os.write(write_fd, cut[-1:] + "sə\n".encode() + b"bad \xff byte\n")
        assert await lines() == "səsə\n"
        assert await lines() == "bad \ufffd byte\n"  # not UTF-8: "�", never a crash
        os.write(write_fd, b"son")
        os.close(write_fd)
        assert await lines() == "son"  # the last line, without its newline, as readline gives it
        assert await lines() == ""
        assert await lines() == ""
    finally:
        os.close(read_fd)


async def test_waiting_for_a_line_can_be_cancelled_at_once() -> None:
    """Ctrl-C cancels the chat where it waits for input: nothing is left reading the terminal."""
    read_fd, write_fd = os.pipe()
    lines = StdinLines(read_fd)
    try:
        waiting = asyncio.create_task(lines())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 1)
        os.write(write_fd, b"later\n")  # the next wait reads it: nothing was taken meanwhile
        assert await asyncio.wait_for(lines(), 1) == "later\n"
    finally:
        os.close(read_fd)
        os.close(write_fd)
