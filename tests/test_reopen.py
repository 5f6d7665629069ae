"""Reopening: within REOPEN_DAYS of its completion, the subscriber reopens an application with a reason.

It goes back to its department as `reopened`, with its history: the change carries the reason, the
card is refreshed and the thread says why. It is offered once, within the window; a press outside it
is explained. The conversation runs on a real database, in the three languages.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.core.settings import SettingsError
from bot.notify.outbox import chat_text
from bot.staff.desk import StaffDesk, actions
from dialogs.events import Text
from dialogs.lifecycle import Status
from dialogs.state import State, Step
from locales import Msg, payload_msg, translate
from storage import outbox
from storage.db import Database
from storage.models import Application, Notification, StatusChange
from tests.assembly import EXAMPLE_DEPARTMENTS, settings_in
from tests.chat import Chat, SmsRecorder, fill_residential
from tests.conftest import Clock
from tests.test_ratings import DEPARTMENTS, _force, completed, filed, open_detail, rows, says

REASON = "İşıq yenə söndü, kabel yenidən qızır."


@pytest.fixture
def service(sample_db: Database, sms: SmsRecorder, clock: Clock) -> Conversations:
    """The service with the example departments (so applications have a staff thread), reopen in 7 days."""
    policy = StaffPolicy(DEPARTMENTS, reopen_within=timedelta(days=7))
    return Conversations(sample_db, sms, clock=clock, policy=policy)


async def app_row(chat: Chat, application: Application) -> Application:
    async with chat.service.db.transaction() as session:
        found = await session.get(Application, application.id)
    assert found is not None
    return found


async def staff_rows(chat: Chat, application: Application) -> list[Notification]:
    found = await rows(chat, Notification, channel=outbox.STAFF)
    return [n for n in found if n.application_id == application.id]


async def reopened_changes(chat: Chat) -> list[StatusChange]:
    return await rows(chat, StatusChange, new_status=Status.REOPENED.value)


# ---- the conversation ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_a_completed_application_is_reopened_with_a_reason_and_goes_back_to_its_department(
    chat: Chat, clock: Clock, lang: str
) -> None:
    application = await completed(chat, lang)
    [news] = [
        n for n in await rows(chat, Notification, kind="status") if n.payload["key"] == "notify.status_result"
    ]
    told = chat_text(news, DEPARTMENTS, timedelta(days=7))
    assert translate(Msg("notify.reopen_hint", {"days": "7"}), lang) in told
    assert translate(Msg("notify.reopen_hint", {"days": "7"}), lang) not in chat_text(news, DEPARTMENTS)

    clock.advance(days=6)  # within the week
    shown = await open_detail(chat, application)
    [done_at] = [c.created_at for c in await rows(chat, StatusChange, new_status="completed")]
    assert says(chat, "reopen.until", date=done_at + timedelta(days=7)) in shown
    assert "reopen" in chat.choice_ids
    shown = await chat.press("reopen")
    assert await chat.step() == Step.REOPEN_REASON
    assert says(chat, "reopen.ask", number=application.number, min=10, max=1000) in shown
    shown = await chat.type(REASON)
    assert says(chat, "reopen.done", number=application.number) in shown
    assert translate(Msg("status.reopened"), lang) in shown  # the page as it is now
    assert await chat.step() == Step.APP_DETAIL
    assert "reopen" not in chat.choice_ids and "rate" not in chat.choice_ids

    row = await app_row(chat, application)
    assert (row.status, row.result) == ("reopened", None)  # open again; the result is in the history
    [change] = await reopened_changes(chat)
    assert (change.old_status, change.note, change.actor) == ("completed", REASON, "subscriber:test")
    to_staff = await staff_rows(chat, application)
    # The card shows it reopened: refreshed, or (not posted yet here, with no outbox worker) as it goes.
    assert "note" in {n.kind for n in to_staff} and {"card", "card_refresh"} & {n.kind for n in to_staff}
    [note] = [n for n in to_staff if n.kind == "note"]
    said = translate(payload_msg(note.payload), "az")
    assert application.number in said and REASON in said
    assert note.user_key == str(DEPARTMENTS.by_key("baki").chat_id)  # type: ignore[union-attr]


async def test_staff_work_on_a_reopened_one_again_and_it_is_not_reopened_twice(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    await chat.press("reopen")
    await chat.type(REASON)
    assert actions("reopened") == ["take", "work", "reject", "msg", "visit"]  # the card's buttons are back

    desk = StaffDesk(chat.service.db, clock=chat.service.clock, policy=chat.service.policy)
    card = await desk.card(application.number)
    assert card is not None
    text = desk.card_text(card.application, None, "az")
    assert translate(Msg("status.reopened"), "az") in text and "Kabel dəyişdirildi." not in text
    await desk.set_status(application.number, Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status(application.number, Status.COMPLETED, "staff:1", "Kabel tam dəyişdirildi.")

    shown = await open_detail(chat, application)
    assert "rate" in chat.choice_ids and "reopen" not in chat.choice_ids  # once is the limit
    assert says(chat, "reopen.already", number=application.number) in await chat.press_id("reopen")
    history = [line for line in shown.splitlines() if line.startswith("•")]
    assert len(history) == 6  # registered, in progress, completed, reopened, in progress, completed
    assert len(await reopened_changes(chat)) == 1


# ---- the window ------------------------------------------------------------------------------------


async def test_a_reopened_application_is_due_again_from_its_reopening(chat: Chat, clock: Clock) -> None:
    """Registered six days before, it is reopened: its result is due `done_within` after the reopening,
    not by the first deadline long past. The subscriber is promised that date, the card shows it, and
    the department is reminded once when it passes."""
    application = await completed(chat)
    clock.advance(days=6)  # past the first deadline of 5 days
    await open_detail(chat, application)
    await chat.press("reopen")
    shown = await chat.type(REASON)
    policy = chat.service.policy
    due = clock() + policy.done_within
    assert says(chat, "app.due", date=due) in shown  # the page as it is now

    desk = StaffDesk(chat.service.db, clock=chat.service.clock, policy=policy)
    assert await desk.check_deadlines(clock()) == 0  # not late: its deadlines started again
    card = await desk.card(application.number)
    assert card is not None
    assert translate(Msg("staff.card_due", {"date": due}), "az") in desk.card_text(
        card.application, None, "az"
    )
    clock.advance(days=5, minutes=1)
    assert await desk.check_deadlines(clock()) == 1  # late now, by the new deadline
    assert await desk.check_deadlines(clock()) == 0  # and reminded once
    late = translate(Msg("staff.card_due_late", {"date": due}), "az")
    assert late in desk.card_text(card.application, None, "az")


async def test_after_the_window_the_choice_is_gone_and_a_press_is_explained(chat: Chat, clock: Clock) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    assert "reopen" in chat.choice_ids
    clock.advance(days=7, seconds=1)
    await chat.command("my")
    await chat.press(f"app:{application.id}")
    assert "reopen" not in chat.choice_ids and "rate" in chat.choice_ids
    shown = await chat.press_id("reopen")  # forced, on the page as it is now
    assert says(chat, "reopen.too_late", number=application.number) in shown
    assert (await app_row(chat, application)).status == "completed"


async def test_the_window_closing_while_the_reason_is_typed_is_explained(chat: Chat, clock: Clock) -> None:
    application = await completed(chat)
    clock.advance(days=6, hours=23)
    await open_detail(chat, application)
    await chat.press("reopen")
    clock.advance(hours=2)
    shown = await chat.type(REASON)
    assert says(chat, "reopen.too_late", number=application.number) in shown
    assert await chat.step() == Step.APP_DETAIL and "reopen" not in chat.choice_ids
    assert (await app_row(chat, application)).status == "completed" and await reopened_changes(chat) == []


async def test_reopen_days_zero_offers_no_reopening(sample_db: Database, clock: Clock) -> None:
    service = Conversations(
        sample_db, SmsRecorder(), clock=clock, policy=StaffPolicy(DEPARTMENTS, reopen_within=timedelta(0))
    )
    chat = Chat(service)
    application = await completed(chat)
    await open_detail(chat, application)
    assert "reopen" not in chat.choice_ids
    assert says(chat, "reopen.too_late", number=application.number) in await chat.press_id("reopen")


def test_reopen_days_is_read_from_the_settings(tmp_path: Path) -> None:
    assert settings_in(tmp_path, EXAMPLE_DEPARTMENTS).staff.policy().reopen_within == timedelta(days=7)
    three = settings_in(tmp_path / "three", EXAMPLE_DEPARTMENTS, REOPEN_DAYS="3")
    assert three.staff.policy().reopen_within == timedelta(days=3)
    with pytest.raises(SettingsError, match="REOPEN_DAYS"):
        settings_in(tmp_path / "bad", EXAMPLE_DEPARTMENTS, REOPEN_DAYS="-1")


# ---- bad input -------------------------------------------------------------------------------------


async def test_a_bad_reason_gets_a_clear_answer_and_reopens_nothing(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    await chat.press("reopen")
    assert says(chat, "reopen.reason_short", min=10) in await chat.type("Yenə")
    assert says(chat, "reopen.reason_long", max=1000, length=1001) in await chat.type("ş" * 1001)
    assert says(chat, "reopen.reason_words") in await chat.type("😡😡😡😡😡😡😡😡😡😡")
    assert says(chat, "error.script") in await chat.type("الكهرباء مقطوعة منذ الصباح")
    assert says(chat, "reopen.hint") in await chat.photo()
    assert await chat.step() == Step.REOPEN_REASON
    assert (await app_row(chat, application)).status == "completed" and await reopened_changes(chat) == []


async def test_only_ones_own_completed_applications_may_be_reopened(chat: Chat) -> None:
    application = await filed(chat)
    await open_detail(chat, application)
    assert "reopen" not in chat.choice_ids
    assert says(chat, "reopen.not_completed", number=application.number) in await chat.press_id("reopen")
    desk = StaffDesk(chat.service.db, clock=chat.service.clock)
    await desk.set_status(application.number, Status.REJECTED, "staff:1", "Bu, abonentin balansında deyil.")
    await open_detail(chat, application)
    assert "reopen" not in chat.choice_ids  # a refusal is not reopened: it was not work done
    assert says(chat, "reopen.not_completed", number=application.number) in await chat.press_id("reopen")

    done = await completed(Chat(chat.service, user="owner", channel="web"))
    stranger = Chat(chat.service, user="stranger")
    await stranger.start()
    await _force(stranger, State(step=Step.APP_DETAIL, data={"view_app": done.id}))
    assert says(stranger, "app.not_found") in await stranger.press_id("reopen")
    await _force(stranger, State(step=Step.REOPEN_REASON, data={"view_app": done.id}))
    await stranger.type(REASON)
    assert await stranger.step() == Step.MY_LIST
    assert (await app_row(chat, done)).status == "completed" and await reopened_changes(chat) == []


# ---- nothing twice ---------------------------------------------------------------------------------


async def test_a_reopen_happens_once_however_it_is_repeated(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    detail_rev = chat.rev
    await chat.press("reopen")
    await chat.send(Text(REASON), update_id="tg-7")
    assert await chat.send(Text(REASON), update_id="tg-7") == ""  # re-delivered: nothing
    assert says(chat, "error.stale_button") in await chat.press_id("reopen", rev=detail_rev)
    assert says(chat, "reopen.already", number=application.number) in await chat.press_id("reopen")

    other = Chat(chat.service, user="wa-1", channel="web")  # the same phone, meanwhile at the reason
    await other.start()
    await fill_residential(other)
    await other.command("cancel")
    await _force_detail_reason(other, application)
    shown = await other.type(REASON)
    assert says(other, "reopen.already", number=application.number) in shown
    assert len(await reopened_changes(chat)) == 1
    notes = [n for n in await staff_rows(chat, application) if n.kind == "note"]
    assert len(notes) == 1


async def _force_detail_reason(chat: Chat, application: Application) -> None:
    """The chat stands at the reason question of `application`, as it would have before it was reopened."""
    state = await chat.state()
    await _force(chat, state.go(Step.REOPEN_REASON, view_app=application.id))


async def test_two_chats_at_the_reason_reopen_once_between_them(chat: Chat) -> None:
    application = await completed(chat)
    other = Chat(chat.service, user="wa-2", channel="web")
    await other.start()
    await fill_residential(other)
    await other.command("cancel")
    for each in (chat, other):
        await open_detail(each, application)
        await each.press("reopen")
    await chat.type(REASON)
    shown = await other.type("Problem həll olunmayıb, işıq yenə yoxdur.")
    assert says(other, "reopen.already", number=application.number) in shown
    [change] = await reopened_changes(chat)
    assert change.note == REASON
