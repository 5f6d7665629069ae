"""Visit booking in the staff chat: "🗓 Vaxt təklif et" on the card, the prompt answered by a reply,
the subscriber's pick in Telegram, the note and the card in the group, and the evening-before
reminders; the real aiogram client against the fake Bot API, the real database, a test clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from locales import LOCAL_TZ, Msg, translate
from storage.db import Database
from storage.models import StaffAction, Visit
from tests.conftest import Clock
from tests.fake_telegram import FakeTelegram, StaffMember
from tests.test_staff_chat import BAKI, GENCE, Desk, make_desk, t


@pytest.fixture
async def desk(fake: FakeTelegram, sample_db: Database, clock: Clock) -> AsyncIterator[Desk]:
    async for made in make_desk(fake, sample_db, clock):
        yield made


def toasts(desk: Desk) -> list[dict[str, Any]]:
    return [p for m, p in desk.fake.calls if m == "answerCallbackQuery"]


def group_texts(desk: Desk, chat_id: int = BAKI) -> list[str]:
    return [str(m.get("text") or m.get("caption") or "") for m in desk.fake.sent_to(chat_id)]


def baku(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=LOCAL_TZ).astimezone(UTC)


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_staff_propose_the_subscriber_picks_and_both_are_reminded(
    desk: Desk, clock: Clock, lang: str
) -> None:
    chat, app = await desk.file_as(lang)
    app_id, number = app.id, app.number
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(desk.buttons()[t("staff.btn_visit")])
    assert toasts(desk)[-1]["text"] == t("staff.toast_write")
    prompt = desk.last_prompt()
    assert "02.12 10:00-12:00" in prompt["text"] and number in prompt["text"]
    await rauf.text("28.11 10:00-12:00; 29.11 14:00-16:00", reply_to=prompt["message_id"])
    await desk.worker.drain()
    assert desk.fake.reactions[-1]["reaction"][0]["emoji"] == "👍"
    told = desk.to_subscriber()[-1]
    assert number in told and "• 28.11 10:00–12:00\n• 29.11 14:00–16:00" in told
    assert (
        translate(Msg("notify.visit_proposed", {"number": number, "windows": ""}), lang).split("\n")[0]
        in told
    )
    assert any("Rauf" in text and "28.11 10:00–12:00" in text for text in group_texts(desk))
    assert "28.11 10:00–12:00, 29.11 14:00–16:00" in desk.fake.edits[-1]["text"]  # offered, on the card

    await chat.command("my")
    await chat.press(f"app:{app_id}")
    shown = await chat.press("29.11")
    assert translate(Msg("visit.agreed", {"window": "29.11 14:00–16:00"}), lang) in shown
    await desk.worker.drain()
    assert t("staff.note_visit_chosen", number=number, window="29.11 14:00–16:00") in group_texts(desk)
    assert t("staff.card_visit", window="29.11 14:00–16:00") in desk.fake.edits[-1]["text"]

    clock.now = baku(28, 18)
    assert await desk.chat.desk.remind_visits(clock()) == 2
    await desk.worker.drain()
    assert await desk.chat.desk.remind_visits(clock()) == 0
    reminder = translate(
        Msg("notify.visit_reminder", {"number": number, "window": "29.11 14:00–16:00"}), lang
    )
    assert reminder in desk.to_subscriber()[-1]
    assert t("staff.note_visit_reminder", number=number, window="29.11 14:00–16:00") in group_texts(desk)
    audit = [(a.action, a.allowed) for a in await desk.rows(StaffAction)]
    assert ("ask_visit", True) in audit and ("visit", True) in audit


async def test_bad_windows_are_answered_in_the_group_and_nothing_is_offered(desk: Desk) -> None:
    app_id = (await desk.file_as("az"))[1].id
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(f"s:{app_id}:visit")
    prompt = desk.last_prompt()
    before = len(desk.to_subscriber())
    await rauf.text("sabah səhər", reply_to=prompt["message_id"])
    assert group_texts(desk)[-1] == t(
        "staff.visit_unreadable", text="sabah səhər", example="02.12 10:00-12:00; 03.12 14:00-16:00"
    )
    await rauf.text("28.11 10-12; 28.11 11-13", reply_to=prompt["message_id"])
    assert group_texts(desk)[-1] == t("staff.visit_overlap")
    aynur = StaffMember(desk.fake, 100002, BAKI, "Aynur")
    await aynur.text("28.11 10:00-12:00", reply_to=prompt["message_id"])  # Rauf's prompt, not hers
    assert group_texts(desk)[-1] == t("staff.prompt_other")
    await desk.worker.drain()
    assert await desk.rows(Visit) == [] and len(desk.to_subscriber()) == before


async def test_the_button_is_refused_on_a_closed_application_and_in_another_departments_chat(
    desk: Desk,
) -> None:
    app_id = (await desk.file_as("az"))[1].id
    stranger = StaffMember(desk.fake, 200001, GENCE, "Vüqar")
    await stranger.press(f"s:{app_id}:visit")
    assert toasts(desk)[-1]["text"] == t("staff.refused_department")
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(f"s:{app_id}:work")
    await rauf.press(f"s:{app_id}:reject")
    await rauf.text("Abonentin balansında deyil.", reply_to=desk.last_prompt()["message_id"])
    await desk.worker.drain()
    labels = {b["text"] for row in desk.fake.edits[-1]["reply_markup"]["inline_keyboard"] for b in row}
    assert t("staff.btn_visit") not in labels  # closed: the card offers no visit any more
    await rauf.press(f"s:{app_id}:visit")
    assert toasts(desk)[-1]["text"] == t("staff.visit_closed", status=Msg("status.rejected"))
    assert toasts(desk)[-1]["show_alert"] is True
