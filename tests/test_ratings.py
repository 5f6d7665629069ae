"""Ratings: after the result, the subscriber rates a completed application 1 to 5, with a comment or not.

The result news in the chat asks for it; the application's page in "My applications" offers it until
it is rated. The rating is stored once, whatever is pressed again or re-delivered; a low one (1–2
stars) is a note in the department's thread, and /stats shows the department's average and the share
of low ones. The conversation runs on a real database, in the three languages.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from bot.core.departments import Departments
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.notify.outbox import chat_text
from bot.staff.desk import Actor, StaffDesk
from dialogs.events import Text
from dialogs.lifecycle import Status
from dialogs.state import State, Step
from locales import Msg, payload_msg, translate
from storage import conversations, outbox
from storage.db import Database
from storage.models import Application, Notification, Rating
from tests.assembly import EXAMPLE_DEPARTMENTS
from tests.chat import Chat, SmsRecorder, fill_residential
from tests.conftest import Clock

FALLBACK = -1009999999999
DEPARTMENTS = Departments.parse(EXAMPLE_DEPARTMENTS, FALLBACK)


@pytest.fixture
def service(sample_db: Database, sms: SmsRecorder, clock: Clock) -> Conversations:
    """The service with the example departments, so applications have a staff thread."""
    return Conversations(sample_db, sms, clock=clock, policy=StaffPolicy(DEPARTMENTS))


async def filed(chat: Chat, lang: str = "az") -> Application:
    await chat.start(hint=lang)
    await fill_residential(chat)
    await chat.press("send")
    async with chat.service.db.transaction() as session:
        query = select(Application).order_by(Application.id.desc())  # type: ignore[union-attr]
        found = (await session.scalars(query)).first()
    assert found is not None
    return found


async def completed(chat: Chat, lang: str = "az", result: str = "Kabel dəyişdirildi.") -> Application:
    """Filed from `chat`, then taken and completed by staff."""
    application = await filed(chat, lang)
    desk = StaffDesk(chat.service.db, clock=chat.service.clock)
    await desk.set_status(application.number, Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status(application.number, Status.COMPLETED, "staff:1", result)
    return application


async def open_detail(chat: Chat, application: Application) -> str:
    await chat.command("my")
    return await chat.press(f"app:{application.id}")


async def rows(chat: Chat, model: type, **where: Any) -> list[Any]:
    async with chat.service.db.transaction() as session:
        query = select(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list((await session.scalars(query)).all())


async def staff_notes(chat: Chat) -> list[Notification]:
    return [n for n in await rows(chat, Notification, channel=outbox.STAFF) if n.kind == "note"]


def says(chat: Chat, key: str, **params: Any) -> str:
    return translate(Msg(key, params), chat.lang)


# ---- the conversation ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_a_completed_application_is_rated_low_with_a_comment_and_the_department_hears_it(
    chat: Chat, lang: str
) -> None:
    application = await completed(chat, lang)
    [news] = [
        n for n in await rows(chat, Notification, kind="status") if n.payload["key"] == "notify.status_result"
    ]
    assert translate(Msg("notify.rate_hint"), lang) in chat_text(news, DEPARTMENTS)  # the news asks

    shown = await open_detail(chat, application)
    assert translate(Msg("status.completed"), lang) in shown
    assert chat.choice_ids[:3] == ["rate", "reopen", "new"]
    shown = await chat.press("rate")
    assert says(chat, "rating.ask", number=application.number) in shown
    assert chat.choice_ids == ["stars:1", "stars:2", "stars:3", "stars:4", "stars:5", "back"]
    shown = await chat.press("stars:2")
    assert await chat.step() == Step.RATE_COMMENT
    assert translate(Msg("rating.stars_2"), lang) in shown and chat.choice_ids == ["skip", "back"]
    shown = await chat.type("Usta iki gün gec gəldi.")
    assert says(chat, "rating.thanks_low", number=application.number) in shown
    assert says(chat, "rating.given", stars=Msg("rating.stars_2")) in shown
    assert await chat.step() == Step.APP_DETAIL and "rate" not in chat.choice_ids  # asked once

    [rating] = await rows(chat, Rating)
    assert (rating.application_id, rating.stars, rating.comment) == (
        application.id,
        2,
        "Usta iki gün gec gəldi.",
    )
    assert (rating.channel, rating.user_key) == ("test", "u1")
    [note] = await staff_notes(chat)
    assert note.application_id == application.id and note.user_key == str(DEPARTMENTS.by_key("baki").chat_id)  # type: ignore[union-attr]
    said = translate(payload_msg(note.payload), "az")
    assert application.number in said and "2 / 5" in said and "Usta iki gün gec gəldi." in said


async def test_a_good_rating_without_a_comment_stays_out_of_the_staff_thread(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    await chat.press("rate")
    await chat.type("5")  # typed instead of pressed
    shown = await chat.press("skip")
    assert says(chat, "rating.thanks", number=application.number) in shown
    [rating] = await rows(chat, Rating)
    assert (rating.stars, rating.comment) == (5, None)
    assert await staff_notes(chat) == []

    low = Chat(chat.service, user="u2")
    second = await completed(low)
    await open_detail(low, second)
    await low.press("rate")
    await low.press("stars:1")
    await low.press("skip")
    [note] = await staff_notes(chat)
    assert note.payload["key"] == "staff.note_rating_low" and note.payload["params"]["stars"] == 1


async def test_back_walks_out_of_the_rating_and_nothing_is_stored(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    await chat.press("rate")
    await chat.press("stars:3")
    await chat.press("back")
    assert await chat.step() == Step.RATE_STARS
    await chat.press("back")
    assert await chat.step() == Step.APP_DETAIL and "rate" in chat.choice_ids
    await chat.press("rate")
    await chat.press("stars:3")
    await chat.command("cancel")
    assert await chat.step() == Step.MENU
    assert await rows(chat, Rating) == []


# ---- bad input -------------------------------------------------------------------------------------


async def test_stars_out_of_range_and_bad_comments_get_a_clear_answer(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    await chat.press("rate")
    out_of_range = says(chat, "rating.stars_range", min=1, max=5)
    for typed in ("7", "0", "-1", "55"):
        assert out_of_range in await chat.type(typed)
    assert out_of_range in await chat.press_id("stars:9")  # a forged button
    assert says(chat, "rating.stars_hint") in await chat.type("əla")
    assert await chat.step() == Step.RATE_STARS

    await chat.press("stars:1")
    too_long = "ç" * 501
    assert says(chat, "rating.comment_long", max=500, length=501) in await chat.type(too_long)
    assert says(chat, "rating.comment_empty") in await chat.type("   \n ")
    assert says(chat, "rating.comment_hint", max=500) in await chat.photo()
    assert says(chat, "error.control_characters") in await chat.type("pis\u202eiş")
    assert await chat.step() == Step.RATE_COMMENT and await rows(chat, Rating) == []

    markup = "<b>Pis</b> <script>alert(1)</script> & «gec»"
    await chat.type(markup)
    [rating] = await rows(chat, Rating)
    assert rating.comment == markup  # stored as written; every channel shows it as plain text
    [note] = await staff_notes(chat)
    assert markup in translate(payload_msg(note.payload), "az")


async def test_only_completed_applications_of_ones_own_may_be_rated(chat: Chat) -> None:
    application = await filed(chat)
    await open_detail(chat, application)
    assert "rate" not in chat.choice_ids
    shown = await chat.press_id("rate")  # a forged press on a registered application
    assert says(chat, "rating.not_completed", number=application.number) in shown

    desk = StaffDesk(chat.service.db, clock=chat.service.clock)
    await desk.set_status(application.number, Status.REJECTED, "staff:1", "Bu, abonentin balansında deyil.")
    await open_detail(chat, application)
    assert "rate" not in chat.choice_ids  # a refusal is not work done
    assert says(chat, "rating.not_completed", number=application.number) in await chat.press_id("rate")

    done = await completed(Chat(chat.service, user="owner", channel="web"))
    stranger = Chat(chat.service, user="stranger")  # no phone of the owner's confirmed
    await stranger.start()
    await stranger.command("my")
    assert says(stranger, "error.stale_button") in await stranger.press_id(f"app:{done.id}")
    await _force(stranger, State(step=Step.APP_DETAIL, data={"view_app": done.id}))
    assert says(stranger, "app.not_found") in await stranger.press_id("rate")
    await _force(stranger, State(step=Step.RATE_COMMENT, data={"view_app": done.id, "rate_stars": 1}))
    await stranger.press_id("skip")
    assert await stranger.step() == Step.MY_LIST
    assert await rows(chat, Rating) == []


async def _force(chat: Chat, state: State) -> None:
    """A conversation stored as another version (or a forger) left it."""
    async with chat.service.db.transaction() as session:
        row = await conversations.lock(
            session, chat.subscriber.channel, chat.subscriber.user_key, "az", chat.service.clock()
        )
        await conversations.save(
            session, row.id, state.to_json(), state.step.value, "az", chat.service.clock()
        )
    chat.rev = state.rev


# ---- nothing twice ---------------------------------------------------------------------------------


async def test_a_rating_is_stored_once_however_it_is_pressed_again_or_redelivered(chat: Chat) -> None:
    application = await completed(chat)
    await open_detail(chat, application)
    detail_rev = chat.rev
    await chat.press("rate")
    await chat.press("stars:2")
    await chat.send(Text("Gec gəldilər."), update_id="tg-1")
    assert await chat.send(Text("Gec gəldilər."), update_id="tg-1") == ""  # re-delivered: nothing
    assert says(chat, "error.stale_button") in await chat.press_id("rate", rev=detail_rev)  # an old button
    shown = await chat.press_id("rate")  # a forged one on the page as it is now
    assert says(chat, "rating.already", number=application.number, stars=2) in shown
    assert len(await rows(chat, Rating)) == 1 and len(await staff_notes(chat)) == 1


async def test_two_chats_of_the_same_subscriber_rate_once_between_them(chat: Chat) -> None:
    application = await completed(chat)
    other = Chat(chat.service, user="wa-1", channel="web")  # the same phone, another channel
    await other.start()
    await fill_residential(other)  # confirms the phone on the way
    await other.command("cancel")
    for each in (chat, other):
        await open_detail(each, application)
        await each.press("rate")
    await chat.press("stars:1")
    await other.press("stars:5")
    await chat.press("skip")
    shown = await other.press("skip")
    assert says(other, "rating.already", number=application.number, stars=1) in shown
    assert await other.step() == Step.APP_DETAIL
    [rating] = await rows(chat, Rating)
    assert (rating.stars, rating.user_key) == (1, "u1")
    assert len(await staff_notes(chat)) == 1


# ---- the staff side --------------------------------------------------------------------------------


async def test_stats_show_the_average_rating_and_the_share_of_low_ones(chat: Chat, clock: Clock) -> None:
    desk = StaffDesk(chat.service.db, clock=clock, policy=chat.service.policy)
    baki = DEPARTMENTS.by_key("baki")
    assert baki is not None

    async def stats() -> str:
        async with chat.service.db.transaction() as session:
            actor = Actor(100001, "Rauf", baki.chat_id)
            reaction = await desk.command(session, baki, actor, "stats", "", True, clock())
        assert reaction.answer is not None
        return "\n".join(translate(line, baki.lang) for line in reaction.answer)

    none_yet = translate(Msg("staff.stats_rating_none", {"period": Msg("staff.stats_period_all")}), "az")
    assert none_yet in await stats()

    for user, stars in (("a", 5), ("b", 2)):
        rater = Chat(chat.service, user=user)
        application = await completed(rater)
        await open_detail(rater, application)
        await rater.press("rate")
        await rater.press(f"stars:{stars}")
        await rater.press("skip")
    shown = await stats()
    assert "orta bal 3,5 (2 qiymət), aşağı qiymətlər (1–2 ulduz): 1, yəni 50%" in shown

    clock.advance(days=31)  # a month on, one more: the last 30 days hold only it
    rater = Chat(chat.service, user="c")
    application = await completed(rater)
    await open_detail(rater, application)
    await rater.press("rate")
    await rater.press("stars:4")
    await rater.press("skip")
    shown = await stats()
    assert "(son 30 gün): orta bal 4,0 (1 qiymət), aşağı qiymətlər (1–2 ulduz): 0, yəni 0%" in shown
    assert "(bütün dövr): orta bal 3,7 (3 qiymət), aşağı qiymətlər (1–2 ulduz): 1, yəni 33%" in shown
