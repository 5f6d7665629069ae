"""Visit booking: staff propose up to three windows, the subscriber picks one from "My applications",
and both sides are reminded at 18:00 Baku the evening before.

The proposal is a reply to the card's "🗓 Vaxt təklif et" prompt (here the desk's answer is called as
the staff chat calls it; tests/test_staff_chat.py does it through the fake Bot API). The conversation
runs on a real database, in the three languages; the clock starts at 27.11.2026 13:00 Baku.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.departments import Departments
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.notify.outbox import chat_text
from bot.staff.desk import VISIT, Actor, Reaction, StaffDesk
from dialogs import visits
from dialogs.errors import Invalid
from dialogs.events import Pressed
from dialogs.lifecycle import Status
from dialogs.state import Step
from locales import LOCAL_TZ, Msg, payload_msg, translate
from storage import outbox
from storage.db import Database
from storage.models import Application, Notification, Visit
from tests.assembly import EXAMPLE_DEPARTMENTS
from tests.chat import Chat, SmsRecorder
from tests.conftest import Clock
from tests.test_ratings import filed, rows

FALLBACK = -1009999999999
DEPARTMENTS = Departments.parse(EXAMPLE_DEPARTMENTS, FALLBACK)
RAUF = Actor(100001, "Rauf", -1001000000001)
TIMES = "28.11 10:00-12:00; 29.11 14:00-16:00; 30.11 09:00-11:00"


@pytest.fixture
def service(sample_db: Database, sms: SmsRecorder, clock: Clock) -> Conversations:
    """The service with the example departments, so applications have a staff thread."""
    return Conversations(sample_db, sms, clock=clock, policy=StaffPolicy(DEPARTMENTS))


def desk_of(chat: Chat) -> StaffDesk:
    return StaffDesk(chat.service.db, clock=chat.service.clock, policy=StaffPolicy(DEPARTMENTS))


async def propose(chat: Chat, application: Application, text: str, actor: Actor = RAUF) -> Reaction:
    """A staff member's reply to the visit prompt, as the staff chat hands it to the desk."""
    desk = desk_of(chat)
    department = DEPARTMENTS.by_key("baki")
    assert department is not None and application.id is not None
    async with chat.service.db.transaction() as session:
        return await desk.answer(
            session,
            department,
            actor,
            application.id,
            (VISIT, RAUF.id),
            (text, None, None),
            True,
            chat.service.clock(),
        )


async def staff_notes(chat: Chat) -> list[str]:
    found = [n for n in await rows(chat, Notification, channel=outbox.STAFF) if n.kind == "note"]
    return [translate(payload_msg(n.payload), "az") for n in sorted(found, key=lambda n: n.id or 0)]


async def visit_news(chat: Chat) -> list[Notification]:
    return sorted(await rows(chat, Notification, kind="visit"), key=lambda n: n.id or 0)


async def open_detail(chat: Chat, application: Application) -> str:
    await chat.command("my")
    return await chat.press(f"app:{application.id}")


def says(chat: Chat, key: str, **params: Any) -> str:
    return translate(Msg(key, params), chat.lang)


def baku(day: int, hour: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=LOCAL_TZ).astimezone(UTC)


# ---- the conversation ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_staff_propose_times_the_subscriber_picks_one_and_the_thread_hears_it(
    chat: Chat, lang: str
) -> None:
    application = await filed(chat, lang)
    reaction = await propose(chat, application, TIMES)
    assert reaction.thumbs_up and not reaction.answer

    [news] = await visit_news(chat)
    told = chat_text(news, DEPARTMENTS)
    assert (news.channel, news.user_key, news.lang) == ("test", "u1", lang)
    assert application.number in told and "• 28.11 10:00–12:00" in told and "• 30.11 09:00–11:00" in told
    assert says(chat, "notify.visit_proposed", number=application.number, windows="").split("\n")[0] in told
    assert "Rauf" in (await staff_notes(chat))[-1] and "29.11 14:00–16:00" in (await staff_notes(chat))[-1]

    shown = await open_detail(chat, application)
    assert says(chat, "visit.offered") in shown
    [visit] = await rows(chat, Visit)
    proposal = int(visit.proposed_at.replace(tzinfo=UTC).timestamp())
    picks = [f"visit:{proposal}:{n}" for n in range(3)]
    assert chat.choice_ids[:4] == [*picks, f"visit_none:{proposal}"]
    assert "[🗓 29.11 14:00–16:00]" in shown

    shown = await chat.press("29.11")
    assert says(chat, "visit.confirmed", number=application.number, window="29.11 14:00–16:00") in shown
    assert says(chat, "visit.agreed", window="29.11 14:00–16:00") in shown  # the page shows it now
    assert await chat.step() == Step.APP_DETAIL and not any(c.startswith("visit") for c in chat.choice_ids)
    [visit] = await rows(chat, Visit)
    assert (visit.chosen, visit.chosen_start.replace(tzinfo=UTC)) == (1, baku(29, 14))
    assert (await staff_notes(chat))[-1] == translate(
        Msg("staff.note_visit_chosen", {"number": application.number, "window": "29.11 14:00–16:00"}), "az"
    )


async def test_a_second_pick_is_refused_and_the_first_stands(chat: Chat) -> None:
    application = await filed(chat)
    await propose(chat, application, TIMES)
    await open_detail(chat, application)
    first, second = chat.choice_ids[0], chat.choice_ids[1]
    rev = chat.rev
    await chat.press(first)
    shown = await chat.press_id(second, rev=chat.rev)  # an old keyboard's other window, pressed later
    assert says(chat, "visit.already", window="28.11 10:00–12:00") in shown
    [visit] = await rows(chat, Visit)
    assert visit.chosen == 0
    shown = await chat.press_id(second, rev=rev)  # the stale keyboard itself: stale, nothing changes
    [visit] = await rows(chat, Visit)
    assert visit.chosen == 0 and len(await staff_notes(chat)) == 2  # proposed, picked


async def test_none_suits_tells_the_thread_and_staff_may_propose_again(chat: Chat) -> None:
    application = await filed(chat)
    await propose(chat, application, "28.11 10:00-12:00")
    await open_detail(chat, application)
    old = chat.choice_ids[0]
    shown = await chat.press(chat.choice_ids[1])  # "none of these suit me"
    assert says(chat, "visit.declined", number=application.number) in shown
    assert says(chat, "visit.declined_line") in shown
    assert "staff" not in shown and "uyğun deyil" in (await staff_notes(chat))[-1]

    chat.service.clock.advance(minutes=5)  # type: ignore[attr-defined]
    await propose(chat, application, "01.12 15:00-17:00")
    assert len(await visit_news(chat)) == 2
    shown = await chat.press_id(old)  # the first proposal's button: it never picks from the new one
    assert says(chat, "visit.replaced") in shown
    shown = await open_detail(chat, application)
    assert "[🗓 01.12 15:00–17:00]" in shown
    await chat.press("01.12")
    [visit] = await rows(chat, Visit)
    assert visit.chosen == 0 and visit.declined_at is None


async def test_a_pick_after_the_application_closed_or_a_window_passed_is_refused(
    chat: Chat, clock: Clock
) -> None:
    application = await filed(chat)
    await propose(chat, application, "27.11 16:00-18:00; 28.11 10:00-12:00")
    await open_detail(chat, application)
    today = chat.choice_ids[0]
    clock.advance(hours=4)  # 17:00 Baku: the first window has begun
    shown = await chat.press_id(today)
    assert says(chat, "visit.past") in shown
    shown = await open_detail(chat, application)
    assert "27.11 16:00" not in shown and "[🗓 28.11 10:00–12:00]" in shown  # no longer offered

    tomorrow = chat.choice_ids[0]
    await desk_of(chat).set_status(application.number, Status.IN_PROGRESS, "staff:1", None)
    await desk_of(chat).set_status(application.number, Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    shown = await chat.press_id(tomorrow)
    assert says(chat, "visit.closed", number=application.number) in shown
    [visit] = await rows(chat, Visit)
    assert visit.chosen is None
    shown = await open_detail(chat, application)
    assert "🗓" not in shown  # a closed application's page says nothing of visits


async def test_another_chat_cannot_pick_for_an_application_it_cannot_see(service: Conversations) -> None:
    owner, stranger = Chat(service, user="u1"), Chat(service, user="u9")
    application = await filed(owner)
    await propose(owner, application, TIMES)
    await open_detail(owner, application)
    pick = owner.choice_ids[0]
    await stranger.start()
    await stranger.command("my")
    shown = await stranger.send(Pressed(pick, stranger.rev))
    assert translate(Msg("error.stale_button"), "az") in shown
    [visit] = await rows(owner, Visit)
    assert visit.chosen is None


# ---- staff's input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sabah günorta", "staff.visit_unreadable"),
        ("", "staff.visit_unreadable"),
        ("31.02 10:00-12:00", "staff.visit_unreadable"),
        ("28.11 12:00-10:00", "staff.visit_order"),
        ("26.11 10:00-12:00", "staff.visit_past"),
        ("27.11 10:00-12:00", "staff.visit_past"),
        ("20.01 10:00-12:00", "staff.visit_far"),
        ("28.11 10:00-12:00; 28.11 11:00-13:00", "staff.visit_overlap"),
        ("28.11 10-11; 28.11 11-12; 28.11 12-13; 28.11 13-14", "staff.visit_too_many"),
    ],
)
async def test_windows_staff_cannot_mean_are_refused_with_a_reason(chat: Chat, text: str, key: str) -> None:
    application = await filed(chat)
    reaction = await propose(chat, application, text)
    assert reaction.answer and reaction.answer[0].key == key and not reaction.thumbs_up
    assert translate(reaction.answer[0], "az") and translate(reaction.answer[0], "ru")
    assert await rows(chat, Visit) == [] and await visit_news(chat) == []


def test_the_formats_staff_write_are_read() -> None:
    now = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)
    read = visits.parse("21.12 10-12\n22/12 14.30 – 16.00;02.01.2027 9:00-10:00", now)
    assert [visits.shown(w) for w in read] == ["21.12 10:00–12:00", "22.12 14:30–16:00", "02.01 09:00–10:00"]
    assert visits.parse("03.01 10:00-11:00", now)[0][0] == datetime(2027, 1, 3, 6, tzinfo=UTC)  # next year
    with pytest.raises(Invalid):
        visits.parse("21.12 10:00-24:30", now)


async def test_a_closed_application_takes_no_proposal_and_another_persons_prompt_is_theirs(
    chat: Chat,
) -> None:
    application = await filed(chat)
    other = Actor(100002, "Aysel", RAUF.chat_id)
    reaction = await propose(chat, application, TIMES, actor=other)
    assert reaction.answer == [Msg("staff.prompt_other")]
    await desk_of(chat).set_status(application.number, Status.IN_PROGRESS, "staff:1", None)
    await desk_of(chat).set_status(application.number, Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    reaction = await propose(chat, application, TIMES)
    assert reaction.answer and reaction.answer[0].key == "staff.visit_closed"
    assert await rows(chat, Visit) == []


# ---- reminders -----------------------------------------------------------------------------------


async def test_both_sides_are_reminded_once_at_18_the_evening_before(chat: Chat, clock: Clock) -> None:
    application = await filed(chat)
    await propose(chat, application, "29.11 14:00-16:00")
    await open_detail(chat, application)
    await chat.press("29.11")
    desk = desk_of(chat)
    clock.now = baku(28, 17) + timedelta(minutes=59)
    assert await desk.remind_visits(clock()) == 0
    clock.now = baku(28, 18)
    assert await desk.remind_visits(clock()) == 2
    assert await desk.remind_visits(clock()) == 0  # a second run (a restart, a second replica): nothing
    clock.advance(hours=1)
    assert await desk.remind_visits(clock()) == 0
    [_, reminder] = await visit_news(chat)
    told = chat_text(reminder, DEPARTMENTS)
    assert says(chat, "notify.visit_reminder", window="29.11 14:00–16:00", number=application.number) in told
    assert (await staff_notes(chat))[-1] == translate(
        Msg("staff.note_visit_reminder", {"number": application.number, "window": "29.11 14:00–16:00"}), "az"
    )
    [visit] = await rows(chat, Visit)
    assert visit.reminded_subscriber_at is not None and visit.reminded_staff_at is not None


async def test_no_reminder_once_the_application_is_closed(chat: Chat, clock: Clock) -> None:
    application = await filed(chat)
    await propose(chat, application, "29.11 14:00-16:00")
    await open_detail(chat, application)
    await chat.press("29.11")
    await desk_of(chat).set_status(application.number, Status.IN_PROGRESS, "staff:1", None)
    await desk_of(chat).set_status(application.number, Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    clock.now = baku(28, 18)
    assert await desk_of(chat).remind_visits(clock()) == 0
    assert len(await visit_news(chat)) == 1  # the proposal only


async def test_a_visit_picked_on_the_evening_before_is_not_reminded_again(chat: Chat, clock: Clock) -> None:
    application = await filed(chat)
    await propose(chat, application, "28.11 10:00-12:00")
    clock.now = baku(27, 19)
    await open_detail(chat, application)
    await chat.press("28.11")
    assert await desk_of(chat).remind_visits(clock()) == 0
