"""Transfer: staff move an open application to another department (wrong region, wrong team).

From the card's "↪️ Başqa şöbəyə" button the group is offered the other departments; the chosen one
gets a new card (nobody assigned) with a note saying where it came from, the old card loses its
buttons and says where it went, the subscriber (and any chat following the application) is told which
department has it now, in their language, and the audit trail records it. `isiqbot applications
transfer` does the same from a shell. The real aiogram client against the fake Bot API, the real
database; the service as `isiqbot run` builds it.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.channels.telegram import CHANNEL
from bot.core.settings import Settings
from bot.staff.cli import add_applications_parser, cmd_applications
from locales import Msg, translate
from storage import applications
from storage.db import Database
from storage.models import Notification, StaffAction
from tests.assembly import EXAMPLE_DEPARTMENTS
from tests.conftest import Clock
from tests.fake_telegram import FakeTelegram, StaffMember
from tests.test_staff_chat import BAKI, FALLBACK, GENCE, Desk, make_desk, t

BAKU_NAME = "Bakı Elektrik Şəbəkəsi"
GANJA = {
    "az": "Gəncə Regional Elektrik Şəbəkəsi",
    "ru": "Гянджинская региональная электрическая сеть",
    "en": "Ganja Regional Electric Network",
}


@pytest.fixture
async def desk(fake: FakeTelegram, sample_db: Database, clock: Clock) -> AsyncIterator[Desk]:
    async for made in make_desk(fake, sample_db, clock):
        yield made


def offered(desk: Desk, chat_id: int = BAKI) -> dict[str, str]:
    """The buttons of the bot's last question of departments in the chat."""
    question = next(m for m in reversed(desk.fake.sent_to(chat_id)) if ":to:" in str(m.get("reply_markup")))
    return {b["text"]: b["callback_data"] for row in question["reply_markup"]["inline_keyboard"] for b in row}


def toasts(desk: Desk) -> list[dict[str, Any]]:
    return [p for m, p in desk.fake.calls if m == "answerCallbackQuery"]


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_a_card_moves_to_the_chosen_department_and_the_subscriber_is_told(
    desk: Desk, lang: str
) -> None:
    app_id = (await desk.file_as(lang))[1].id
    number = (await desk.app(app_id)).number
    async with desk.db.transaction() as session:  # a neighbour follows it (a duplicate report)
        await applications.follow(session, app_id, CHANNEL, "777", "en", desk.clock())
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(desk.buttons()[t("staff.btn_take")])
    await rauf.press(desk.buttons()[t("staff.btn_move")])
    assert toasts(desk)[-1]["text"] == t("staff.toast_move")
    question = next(m for m in reversed(desk.fake.sent_to(BAKI)) if ":to:" in str(m.get("reply_markup")))
    assert question["text"] == t("staff.ask_move", name="Rauf", number=number)
    choices = offered(desk)
    assert BAKU_NAME not in choices and GANJA["az"] in choices and "Texniki xidmət şöbəsi" in choices

    await rauf.press(choices[GANJA["az"]])
    await desk.worker.drain()
    assert toasts(desk)[-1]["text"] == t("staff.toast_moved", number=number, department=GANJA["az"])
    moved = await desk.app(app_id)
    assert (moved.department, moved.assignee_id, moved.taken_at, moved.status) == (
        "gence",
        None,
        None,
        "registered",
    )

    # The Gəncə group gets the card, with its buttons, and a note saying where it came from.
    card = desk.card(GENCE)
    assert number in card["text"] and t("staff.btn_take") in str(card["reply_markup"])
    assert any(
        m.get("text") == t("staff.note_moved_in", name="Rauf", department=BAKU_NAME)
        for m in desk.fake.sent_to(GENCE)
    )
    # The Baku card is closed: no buttons, and its last line says where it went.
    closed = [e for e in desk.fake.edits if int(e["chat_id"]) == BAKI][-1]
    assert closed["reply_markup"]["inline_keyboard"] == []
    assert closed["text"].endswith(t("staff.card_moved", name="Rauf", department=GANJA["az"]))

    # The subscriber hears it in their language, the follower in theirs.
    said = translate(Msg("notify.transferred", {"number": number, "department": GANJA[lang]}), lang)
    assert any(said in text for text in desk.to_subscriber())
    follower = translate(Msg("notify.transferred", {"number": number, "department": GANJA["en"]}), "en")
    assert any(follower in text for text in desk.to_subscriber(777))

    # Gəncə's staff take it from here; Baku's old buttons and the offer no longer act on it.
    await StaffMember(desk.fake, 100003, GENCE, "Aynur").press(f"s:{app_id}:take")
    assert (await desk.app(app_id)).assignee_name == "Aynur"
    await rauf.press(f"s:{app_id}:take")
    await rauf.press(choices[GANJA["az"]])  # the offer pressed again: no second move
    assert toasts(desk)[-1]["text"] == t("staff.refused_department")
    await desk.worker.drain()
    audit = [(a.user_name, a.action, a.allowed, a.detail) for a in await desk.rows(StaffAction)]
    assert ("Rauf", "ask_move", True, None) in audit and ("Rauf", "move", True, "baki → gence") in audit
    assert ("Aynur", "take", True, None) in audit
    assert [a for a in audit if a[1] == "move" and a[2]] == [("Rauf", "move", True, "baki → gence")]
    async with desk.db.transaction() as session:
        news = (await session.scalars(select(Notification).where(Notification.kind == "transferred"))).all()
    assert sorted(n.user_key for n in news) == ["501", "777"]


async def test_moving_a_closed_one_here_or_nowhere_is_refused(desk: Desk) -> None:
    app_id = (await desk.file_as("az"))[1].id
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(f"s:{app_id}:to:baki")
    assert toasts(desk)[-1]["text"] == t("staff.move_same", department=BAKU_NAME)
    await rauf.press(f"s:{app_id}:to:atlantis")
    assert toasts(desk)[-1]["text"] == t("staff.move_unknown", department="atlantis")
    await rauf.press(f"s:{app_id}:to:{'x' * 40}")  # not a department key at all: not our button
    assert toasts(desk)[-1]["text"] == t("staff.stale_button")
    await StaffMember(desk.fake, 999, BAKI, "Kənar").press(f"s:{app_id}:move")  # not on the staff
    assert toasts(desk)[-1]["text"] == t("staff.refused_not_staff")
    await rauf.press(f"s:{app_id}:reject")
    await rauf.text("Bizim balansda deyil.", reply_to=desk.last_prompt()["message_id"])
    await rauf.press(f"s:{app_id}:move")
    assert toasts(desk)[-1]["text"] == t("staff.move_closed", status=Msg("status.rejected"))
    assert (await desk.app(app_id)).department == "baki"
    await desk.worker.drain()
    assert t("staff.btn_move") not in str(desk.fake.edits[-1]["reply_markup"])  # closed: no button


async def test_with_one_department_there_is_no_button_to_move(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    only_baku = EXAMPLE_DEPARTMENTS.split("[departments.gence]")[0]
    async for desk in make_desk(fake, sample_db, clock, only_baku, None):
        app_id = (await desk.file_as("az"))[1].id
        assert t("staff.btn_move") not in desk.buttons()
        await StaffMember(desk.fake, 100001, BAKI, "Rauf").press(f"s:{app_id}:move")
        assert toasts(desk)[-1]["text"] == t("staff.move_nowhere")


# ---- from a shell --------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isiqbot")
    add_applications_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["applications", *argv])


@pytest.fixture
def settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    departments = tmp_path / "departments.toml"
    departments.write_text(EXAMPLE_DEPARTMENTS, encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DEPARTMENTS_FILE", str(departments))
    monkeypatch.setenv("STAFF_CHAT_ID", str(FALLBACK))
    return Settings(env_file=None)


async def test_the_command_moves_it_and_the_running_service_carries_the_news(
    desk: Desk, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app_id = (await desk.file_as("ru"))[1].id
    number = (await desk.app(app_id)).number
    assert (
        await cmd_applications(
            settings, parse("transfer", number, "--to", "GENCE", "--actor", "Aysel"), now=desk.clock()
        )
        == 0
    )
    assert (
        capsys.readouterr().out.strip()
        == f"{number} moved to gence ({GANJA['en']}); its subscriber will be told"
    )
    await desk.worker.drain()
    assert number in desk.card(GENCE)["text"]
    closed = [e for e in desk.fake.edits if int(e["chat_id"]) == BAKI][-1]
    assert closed["text"].endswith(t("staff.card_moved", name="Aysel", department=GANJA["az"]))
    said = translate(Msg("notify.transferred", {"number": number, "department": GANJA["ru"]}), "ru")
    assert any(said in text for text in desk.to_subscriber())
    audit = [(a.user_name, a.action, a.detail) for a in await desk.rows(StaffAction)]
    assert audit == [("cli:Aysel", "move", "baki → gence")]

    assert (
        await cmd_applications(settings, parse("transfer", number, "--to", "gence", "--actor", "Aysel")) == 1
    )
    assert (
        f"{number}: {translate(Msg('staff.move_same', {'department': GANJA['az']}), 'en')}"
        in capsys.readouterr().err
    )
    assert (
        await cmd_applications(settings, parse("transfer", number, "--to", "mars", "--actor", "Aysel")) == 1
    )
    err = capsys.readouterr().err
    assert (
        "There is no such department: mars." in err
        and "(departments: baki, gence, simal, cenub, default)" in err
    )
    assert (
        await cmd_applications(settings, parse("transfer", "TX-2026-999999", "--to", "baki", "--actor", "A"))
        == 1
    )
    assert "TX-2026-999999" in capsys.readouterr().err
