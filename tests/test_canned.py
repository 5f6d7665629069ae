"""Canned replies: per-department templates from the departments file, picked from a card's button.

"📋 Hazır cavab" offers the department's replies (its own, then the shared ones); the one picked goes
to the subscriber in their language with the number filled in, signed with the department's name like
any staff message, and a note in the thread says which one went. The real aiogram client against the
fake Bot API, the real database; the service as `isiqbot run` builds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.departments import Departments, DepartmentsError
from locales import Msg, translate
from storage.db import Database
from storage.models import StaffAction
from tests.assembly import EXAMPLE_DEPARTMENTS
from tests.conftest import Clock
from tests.fake_telegram import FakeTelegram, StaffMember
from tests.test_staff_chat import BAKI, Desk, make_desk, t

EXAMPLE = Departments.parse(EXAMPLE_DEPARTMENTS, None)
BAKU = EXAMPLE.by_key("baki")
assert BAKU is not None


@pytest.fixture
async def desk(fake: FakeTelegram, sample_db: Database, clock: Clock) -> AsyncIterator[Desk]:
    async for made in make_desk(fake, sample_db, clock):
        yield made


def offered(desk: Desk) -> tuple[str, dict[str, str]]:
    question = next(m for m in reversed(desk.fake.sent_to(BAKI)) if ":r:" in str(m.get("reply_markup")))
    rows = question["reply_markup"]["inline_keyboard"]
    return question["text"], {b["text"]: b["callback_data"] for row in rows for b in row}


def toasts(desk: Desk) -> list[dict[str, Any]]:
    return [p for m, p in desk.fake.calls if m == "answerCallbackQuery"]


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_a_canned_reply_reaches_the_subscriber_in_their_language(desk: Desk, lang: str) -> None:
    _, app = await desk.file_as(lang)
    app_id, number = app.id, app.number
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(desk.buttons()[t("staff.btn_canned")])
    assert toasts(desk)[-1]["text"] == t("staff.toast_canned_pick")
    question, choices = offered(desk)
    assert question == t("staff.ask_canned", name="Rauf", number=number)
    assert list(choices) == [
        "Kabel dəyişdirilir",
        "Briqada yoldadır",
        "Sayğaca giriş lazımdır",
    ]  # its own first

    await rauf.press(choices["Briqada yoldadır"])
    await desk.worker.drain()
    assert toasts(desk)[-1]["text"] == t("staff.toast_canned_sent", number=number)
    crew = BAKU.reply("crew")
    assert crew is not None
    said = desk.to_subscriber()[-1]
    head = translate(Msg("notify.staff_message", {"department": BAKU.name(lang), "number": number}), lang)
    assert said.startswith(head) and crew.text(lang, number) in said
    assert "{number}" not in said
    note = t("staff.note_canned", name="Rauf", title="Briqada yoldadır")
    assert any(m.get("text") == note for m in desk.fake.sent_to(BAKI))
    audit = [(a.action, a.allowed) for a in await desk.rows(StaffAction)]
    assert ("ask_canned", True) in audit and ("message", True) in audit
    assert (await desk.app(app_id)).status == "registered"  # a reply changes nothing else


async def test_what_cannot_be_sent_is_refused(desk: Desk) -> None:
    _, app = await desk.file_as("az")
    app_id = app.id
    before = len(desk.to_subscriber())
    await StaffMember(desk.fake, 999, BAKI, "Kənar").press(f"s:{app_id}:r:crew")  # not on the staff
    assert toasts(desk)[-1]["text"] == t("staff.refused_not_staff")
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.press(f"s:{app_id}:r:gone")  # taken out of the file since it was offered
    assert toasts(desk)[-1]["text"] == t("staff.stale_button")
    await rauf.press(f"s:{app_id}:r:{'x' * 33}")  # not a key at all
    assert toasts(desk)[-1]["text"] == t("staff.stale_button")
    await desk.worker.drain()
    assert len(desk.to_subscriber()) == before


async def test_a_department_without_replies_has_no_button(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    without = EXAMPLE_DEPARTMENTS.split("# Canned replies")[0]
    async for desk in make_desk(fake, sample_db, clock, without):
        app_id = (await desk.file_as("az"))[1].id
        assert t("staff.btn_canned") not in desk.buttons()
        await StaffMember(desk.fake, 100001, BAKI, "Rauf").press(f"s:{app_id}:canned")
        assert toasts(desk)[-1]["text"] == t("staff.canned_none")


BAD = """
[departments.baki]
name = { az = "Bakı", ru = "Баку", en = "Baku" }
chat_id = -1001
staff = [1]
regions = ["Yasamal"]

[departments.baki.replies.ok]
title = { az = "Yaxşı", ru = "Хорошо", en = "Good" }
text = { az = "{number} hazırdır, {{sağ olun}}.", ru = "{number} готово.", en = "{number} is ready." }

[replies.Bad]
title = { az = "x", ru = "x", en = "x" }
text = { az = "{number}", ru = "{number}", en = "{number}" }

[replies.fields]
title = { az = "Çox uzun başlıq, qırx simvoldan da uzun olan başlıq", ru = "x", en = "x", de = "x" }
text = { az = "{name} {number:>99}", ru = "{number.__class__}", en = "{ stray" }
colour = "red"

[replies.empty]
title = "x"
"""


def test_the_file_is_checked_and_every_problem_named() -> None:
    with pytest.raises(DepartmentsError) as caught:
        Departments.parse(BAD, None, "DEPARTMENTS_FILE x.toml")
    problems = caught.value.problems
    expected = [
        'replies "Bad": the key must be 1-32 characters of a-z, 0-9, _ and -',
        'replies "fields": unknown key "colour"',
        'replies "fields": title has unknown language "de" (only az, ru, en)',
        'replies "fields": title.az is longer than 40 characters',
        'replies "fields": text.az has {name}; only {number} is filled in',
        'replies "fields": text.az has {number:>99}; only {number} is filled in',
        'replies "fields": text.ru has {number.__class__}; only {number} is filled in',
        'replies "fields": text.en has a stray { or }',
        'replies "empty": title must be a table { az = ..., ru = ..., en = ... }, not "x"',
        'replies "empty": text must be a table { az = ..., ru = ..., en = ... }, missing',
    ]
    for problem in expected:
        assert any(problem in p for p in problems), (problem, problems)
    assert not any('"ok"' in p for p in problems)


def test_a_departments_own_reply_replaces_a_shared_one_and_braces_stay_braces() -> None:
    text = (
        EXAMPLE_DEPARTMENTS
        + """
[departments.gence.replies.crew]
title = { az = "Gəncə briqadası", ru = "Бригада Гянджи", en = "Ganja crew" }
text = { az = "{number}: {{Gəncə}}", ru = "{number}", en = "{number}" }
"""
    )
    departments = Departments.parse(text, -100)
    gence = departments.by_key("gence")
    assert gence is not None and [r.key for r in gence.replies] == ["crew", "access"]
    crew = gence.reply("crew")
    assert (
        crew is not None and crew.title("en") == "Ganja crew" and crew.text("az", "TX-1") == "TX-1: {Gəncə}"
    )
    fallback = departments.fallback
    assert fallback is not None and [r.key for r in fallback.replies] == ["crew", "access"]
    three = '{ az = "a", ru = "b", en = "c" }'
    thirteen = "".join(f"[replies.r{i}]\ntitle = {three}\ntext = {three}\n" for i in range(13))
    with pytest.raises(DepartmentsError, match="13 replies; at most 12"):
        Departments.parse(EXAMPLE_DEPARTMENTS.split("# Canned replies")[0] + thirteen, None)
