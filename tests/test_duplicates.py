"""Duplicate reports: an open application on the same account is shown before a new one is filed.

The subscriber's own (filed from another channel, or from this chat earlier) is opened; another
chat's is followed, and its news then reaches the follower too. A different problem goes on as a new
application. The conversation runs on a real database, in the three languages.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.core.service import Conversations
from bot.staff.desk import StaffDesk
from dialogs.lifecycle import Status
from dialogs.state import Step
from locales import Msg, translate
from storage.models import Application, ApplicationFollower, Notification
from tests.chat import PLAIN, SHOP, Chat, choose_account, describe_and_finish, fill_residential, identify


async def filed(service: Conversations, user: str = "first", channel: str = "web") -> Application:
    """An application for PLAIN's account, filed and sent from another chat."""
    chat = Chat(service, user=user, channel=channel)
    await fill_residential(chat)
    await chat.press("send")
    async with service.db.transaction() as session:
        return (await session.scalars(select(Application).order_by(Application.id.desc()))).first()  # type: ignore[union-attr]


async def to_reason(chat: Chat, phone: str = PLAIN, lang: str = "az") -> None:
    await chat.start(hint=lang)
    await identify(chat, phone)
    await choose_account(chat)


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_ones_own_open_application_is_shown_and_opened_instead_of_a_second(
    service: Conversations, lang: str
) -> None:
    first = await filed(service)
    chat = Chat(service, user="second", channel="test")  # the same phone, in another channel
    await to_reason(chat, lang=lang)
    shown = await chat.press("reason:no_power")
    assert await chat.step() == Step.ALREADY_OPEN
    params = {
        "number": first.number,
        "code": first.account_code,
        "reason": Msg("reason.no_power"),
        "status": Msg("status.registered"),
        "date": first.created_at,
    }
    assert translate(Msg("duplicate.open", params), lang) in shown
    assert chat.choice_ids[:2] == ["dup:open", "dup:new"]
    shown = await chat.press("dup:open")
    state = await chat.state()
    assert state.step == Step.APP_DETAIL and state.data["view_app"] == first.id and not state.draft
    assert first.number in shown


async def test_another_problem_goes_on_as_a_new_application(service: Conversations) -> None:
    await filed(service)
    chat = Chat(service, user="second")
    await to_reason(chat)
    await chat.press("reason:low_voltage")
    await chat.press("dup:new")
    assert await chat.step() == Step.DESCRIPTION
    await describe_and_finish(chat, "Gərginlik çox aşağıdır, lampalar sönükdür.")
    await chat.press("send")
    async with service.db.transaction() as session:
        assert len((await session.scalars(select(Application))).all()) == 2


async def test_another_chats_application_is_followed_and_its_news_reach_the_follower(
    service: Conversations,
) -> None:
    first = await filed(service)
    async with service.db.transaction() as session:  # filed for the account under a number since changed
        await session.execute(
            update(Application).where(Application.id == first.id).values(applicant_phone="+994500000001")
        )
    chat = Chat(service, user="neighbour")
    await to_reason(chat, lang="ru")
    await chat.press("reason:no_power")
    assert chat.choice_ids[:2] == ["dup:follow", "dup:new"]
    shown = await chat.press("dup:follow")
    assert translate(Msg("duplicate.following", {"number": first.number}), "ru") in shown
    await chat.press("new")  # asked again: one follower, not two
    await chat.press("reason:no_power")
    await chat.press("dup:follow")
    assert await chat.step() == Step.MENU

    desk = StaffDesk(service.db, clock=service.clock)
    await desk.set_status(first.number, Status.IN_PROGRESS, "staff:1", None)
    async with service.db.transaction() as session:
        followers = (await session.scalars(select(ApplicationFollower))).all()
        assert [(f.application_id, f.user_key, f.lang) for f in followers] == [(first.id, "neighbour", "ru")]
        news = (
            await session.scalars(
                select(Notification).where(
                    Notification.kind == "status", Notification.application_id == first.id
                )
            )
        ).all()
    to_chats = {(n.channel, n.user_key, n.lang) for n in news if n.channel in ("web", "test")}
    assert ("web", "first", "az") in to_chats and ("test", "neighbour", "ru") in to_chats
    assert sum(1 for n in news if n.user_key == "neighbour") == 1  # the in-progress news, once


async def test_closed_ones_other_points_and_edits_are_not_held_up(service: Conversations) -> None:
    first = await filed(service)
    desk = StaffDesk(service.db, clock=service.clock)
    await desk.set_status(first.number, Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status(first.number, Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    chat = Chat(service, user="second")
    await to_reason(chat)
    await chat.press("reason:no_power")
    assert await chat.step() == Step.DESCRIPTION  # completed: nothing open

    shop = Chat(service, user="shop-1")  # a main code: an application on UN-0001 …
    await shop.start()
    await identify(shop, SHOP)
    await shop.press("UN-0001")
    await shop.press("reason:sparks")
    await describe_and_finish(shop, "Qığılcım var.")
    await shop.press("send")
    other = Chat(service, user="shop-2")  # … does not hold up one on UN-0002
    await other.start()
    await identify(other, SHOP)
    await other.press("UN-0002")
    await other.press("reason:sparks")
    assert await other.step() == Step.DESCRIPTION

    again = Chat(service, user="shop-3")  # on UN-0001 it is shown; from the review's edit it is not
    await again.start()
    await identify(again, SHOP)
    await again.press("UN-0001")
    await again.press("reason:sparks")
    assert await again.step() == Step.ALREADY_OPEN
    await again.press("dup:new")
    await describe_and_finish(again, "Başqa qığılcım.")
    assert await again.step() == Step.REVIEW
    await again.press("edit:reason")
    await again.press("reason:low_voltage")
    assert await again.step() == Step.REVIEW
