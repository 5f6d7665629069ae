"""The staff chat: the real aiogram client against the fake Bot API, the real database, a test clock."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.app import build
from bot.channels.telegram import CHANNEL
from bot.channels.telegram.connector import Telegram
from bot.channels.telegram.staffchat import StaffChat
from bot.core.departments import Departments
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.notify.outbox import OutboxWorker
from bot.staff.desk import COMMANDS
from locales import Msg, translate
from storage import staff
from storage.db import Database
from storage.models import Application, Notification, StaffAction, StatusChange
from tests.assembly import EXAMPLE_DEPARTMENTS, FAST, settings_in
from tests.chat import (
    BOTH,
    PLAIN,
    Chat,
    SmsRecorder,
    choose_account,
    describe_and_finish,
    fill_residential,
    identify,
)
from tests.conftest import Clock
from tests.fake_telegram import TOKEN, FakeTelegram, StaffMember
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
BAKI, GENCE, FALLBACK = -1001000000001, -1001000000002, -1009999999999
SUBSCRIBER = 501  # a Telegram user id: the private chat's id too


@dataclass
class Desk:
    fake: FakeTelegram
    service: Conversations
    worker: OutboxWorker
    clock: Clock
    policy: StaffPolicy
    chat: StaffChat

    @property
    def db(self) -> Database:
        return self.service.db

    async def file(
        self, user: int = SUBSCRIBER, phone: str = PLAIN, description: str | None = None
    ) -> Application:
        """A subscriber files an application in Telegram; the outbox then posts its card."""
        chat = Chat(self.service, user=str(user), channel=CHANNEL)
        if description is None:
            await fill_residential(chat, phone)
        else:
            await identify(chat, phone)
            await choose_account(chat)
            await chat.press("reason:no_power")
            await describe_and_finish(chat, description)
        await chat.press("send")
        await self.worker.drain()
        async with self.db.transaction() as session:
            application = (await session.scalars(select(Application).order_by(Application.id.desc()))).first()
        assert application is not None
        return application

    async def file_as(self, lang: str) -> tuple[Chat, Application]:
        """A Telegram subscriber who speaks `lang` files for PLAIN (Yasamal: Baku); the card is posted."""
        chat = Chat(self.service, user=str(SUBSCRIBER), channel=CHANNEL)
        await chat.start(hint=lang)
        await chat.press("new")
        await chat.contact(PLAIN)
        await choose_account(chat)
        await chat.press("reason:no_power")
        await describe_and_finish(chat, "Mənzildə səhərdən işıq yoxdur.")
        await chat.press("send")
        await self.worker.drain()
        async with self.db.transaction() as session:
            application = (
                await session.scalars(select(Application).order_by(col(Application.id).desc()))
            ).first()
        assert application is not None and application.id is not None
        return chat, application

    async def app(self, application_id: int) -> Application:
        async with self.db.transaction() as session:
            found = await session.get(Application, application_id)
        assert found is not None
        return found

    async def rows(self, model: type) -> list[Any]:
        async with self.db.transaction() as session:
            return list((await session.scalars(select(model))).all())

    def card(self, chat_id: int = BAKI) -> dict[str, Any]:
        return next(m for m in self.fake.sent_to(chat_id) if "inline_keyboard" in str(m.get("reply_markup")))

    def buttons(self, chat_id: int = BAKI) -> dict[str, str]:
        markup = self.card(chat_id)["reply_markup"]
        return {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}

    def to_subscriber(self, user: int = SUBSCRIBER) -> list[str]:
        return [str(m.get("text") or m.get("caption") or "") for m in self.fake.sent_to(user)]

    def last_prompt(self, chat_id: int = BAKI) -> dict[str, Any]:
        return next(
            m for m in reversed(self.fake.sent_to(chat_id)) if "force_reply" in str(m.get("reply_markup"))
        )


def t(key: str, **params: Any) -> str:
    """A message as an Azerbaijani-speaking person sees it."""
    return translate(Msg(key, params), "az")


def policy_for(text: str | None = None, fallback: int | None = FALLBACK) -> StaffPolicy:
    return StaffPolicy(Departments.parse(text if text is not None else EXAMPLE_DEPARTMENTS, fallback))


async def make_desk(
    fake: FakeTelegram,
    sample_db: Database,
    clock: Clock,
    departments: str | None = EXAMPLE_DEPARTMENTS,
    fallback: int | None = FALLBACK,
    **settings: object,
) -> AsyncIterator[Desk]:
    """The service as `isiqbot run` builds it, polling the fake Bot API; the test drives the outbox."""
    with tempfile.TemporaryDirectory() as folder:
        settings = settings_in(
            Path(folder),
            departments,
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_URL=fake.url,
            STAFF_CHAT_ID=fallback,
            **settings,
        )
        service = await build(settings, db=sample_db, clock=clock, code_sms=SmsRecorder(), pace=FAST)
    telegram = service.channels["telegram"]
    assert isinstance(telegram, Telegram)
    stop = asyncio.Event()
    polling = asyncio.create_task(telegram.channel.poll(stop, long_poll_seconds=1))
    conversations = service.conversations
    chat = telegram.staff_chat
    yield Desk(fake, conversations, service.worker, clock, conversations.policy, chat)  # type: ignore[arg-type]
    stop.set()
    polling.cancel()
    await asyncio.gather(polling, return_exceptions=True)
    await service.close()


@pytest.fixture
async def desk(fake: FakeTelegram, sample_db: Database, clock: Clock) -> AsyncIterator[Desk]:
    async for made in make_desk(fake, sample_db, clock):
        yield made


# ---- routing and the card --------------------------------------------------------------------------


async def test_a_new_application_gets_a_card_in_its_departments_chat(desk: Desk) -> None:
    application = await desk.file()  # PLAIN lives in Yasamal: the Baku department
    assert application.department == "baki"
    card = desk.card(BAKI)
    text = card["text"]
    assert application.number in text and "Yasamal" in text and "İşıq yoxdur" in text
    assert "+994 99 651 00 79" in text  # contacts in full: staff call them
    assert "Məmmədov Elçin" in text and "Telegram" in text and "qeydə alınıb" in text
    assert "parse_mode" not in card  # plain text: nothing a subscriber wrote is markup
    assert set(desk.buttons()) == {
        t(f"staff.btn_{a}") for a in ("take", "work", "reject", "msg", "visit", "canned", "move")
    }
    assert desk.fake.sent_to(GENCE) == [] and desk.fake.sent_to(FALLBACK) == []


async def test_routing_by_region_and_the_fallback_chat(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    only_baku = """
[departments.baki]
name = { az = "Bakı Elektrik Şəbəkəsi", ru = "Бакинская сеть", en = "Baku network" }
chat_id = -1001000000001
staff = [100001]
regions = ["Yasamal"]
"""
    async for desk in make_desk(fake, sample_db, clock, only_baku):
        baku = await desk.file(SUBSCRIBER, PLAIN)
        ganja = await desk.file(502, BOTH)  # Gəncə: no department serves it here
        assert (baku.department, ganja.department) == ("baki", "default")
        assert ganja.number in desk.card(FALLBACK)["text"]
        assert baku.number not in str(desk.fake.sent_to(FALLBACK))


async def test_without_any_staff_chat_the_application_still_registers(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    async for desk in make_desk(fake, sample_db, clock, None, None):
        application = await desk.file()
        assert application.department is None and application.status == "registered"


async def test_subscriber_text_is_shown_as_text(desk: Desk) -> None:
    tricky = "<b>qalın</b> & [Azərişıq](http://azerisiq.example.evil) <a href='x'>bura</a> işıq yoxdur"
    application = await desk.file(description=tricky)
    assert tricky in desk.card()["text"]
    assert application.description == tricky


async def test_one_group_message_for_an_application_with_a_photo_and_a_location(desk: Desk) -> None:
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await identify(chat, PLAIN)
    await choose_account(chat)
    await chat.press("reason:damaged_cable")
    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb.")
    await chat.photo("AgAD-photo-1")
    await chat.location(40.39, 49.85)
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    await desk.worker.drain()
    sent = desk.fake.sent_to(BAKI)
    assert [m["method"] for m in sent] == ["sendPhoto"]  # the photo is the card, its text the caption
    card = sent[0]
    assert card["photo"] == "AgAD-photo-1" and "inline_keyboard" in card["reply_markup"]
    assert "📎 Əlavələr: 1 şəkil" in card["caption"]
    assert "https://maps.google.com/?q=40.390000,49.850000" in card["caption"]  # the place, a link

    await StaffMember(desk.fake, 100001, BAKI, "Rauf").press(desk.buttons()[t("staff.btn_take")])
    await desk.worker.drain()
    edit = desk.fake.edits[-1]  # the card is edited as a caption
    assert int(edit["message_id"]) == card["message_id"] and "İcraçı: Rauf" in edit["caption"]


async def test_a_card_too_long_for_a_caption_goes_as_text_and_the_photo_after_it(desk: Desk) -> None:
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await identify(chat, PLAIN)
    await choose_account(chat)
    await chat.press("reason:damaged_cable")
    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb. " * 24)  # near the 1,000 a description may have
    await chat.photo("AgAD-photo-2")
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    await desk.worker.drain()
    sent = desk.fake.sent_to(BAKI)
    assert [m["method"] for m in sent] == ["sendMessage", "sendPhoto"]
    assert sent[1]["photo"] == "AgAD-photo-2"
    assert sent[1]["reply_parameters"]["message_id"] == sent[0]["message_id"]  # in the card's thread


async def test_a_card_whose_photo_telegram_refuses_still_reaches_staff_as_text(desk: Desk) -> None:
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await identify(chat, PLAIN)
    await choose_account(chat)
    await chat.press("reason:damaged_cable")
    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb.")
    await chat.photo("AgAD-gone")
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    refused = {"ok": False, "error_code": 400, "description": "Bad Request: wrong file identifier"}
    desk.fake.fail_next("sendphoto", 400, refused)
    await desk.worker.drain()
    sent = desk.fake.sent_to(BAKI)
    assert sent[0]["method"] == "sendMessage" and "inline_keyboard" in sent[0]["reply_markup"]
    assert "📎 Əlavələr: 1 şəkil" in sent[0]["text"]  # the card, as text, says a photo was sent


async def test_card_refreshes_waiting_together_go_as_one_edit(desk: Desk) -> None:
    await desk.file()
    await desk.worker.drain()
    async with desk.service.db.transaction() as session:
        application = (await session.scalars(select(Application))).one()
        for _ in range(5):  # five reasons to show the card again before the worker gets to it
            assert await staff.to_thread(session, application.id, "card_refresh", {}, desk.clock())
        kinds = (await session.scalars(select(Notification.kind))).all()
    assert list(kinds).count("card_refresh") == 1


# ---- the whole cycle -------------------------------------------------------------------------------


async def test_take_in_progress_completed_with_the_subscriber_told_each_step(desk: Desk) -> None:
    application = await desk.file()
    assert application.id is not None
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    buttons = desk.buttons()

    await rauf.press(buttons[t("staff.btn_take")])
    await desk.worker.drain()
    taken = await desk.app(application.id)
    assert (taken.assignee_id, taken.assignee_name) == (100001, "Rauf")
    assert "İcraçı: Rauf" in desk.fake.edits[-1]["text"]
    toast = [p for m, p in desk.fake.calls if m == "answerCallbackQuery"][-1]
    assert application.number in toast["text"]

    await rauf.press(buttons[t("staff.btn_work")])
    await desk.worker.drain()
    assert (await desk.app(application.id)).status == "in_progress"
    assert any("statusu: icradadır" in t for t in desk.to_subscriber())
    edited = desk.fake.edits[-1]
    labels = {b["text"] for row in edited["reply_markup"]["inline_keyboard"] for b in row}
    assert t("staff.btn_done") in labels and t("staff.btn_work") not in labels

    await rauf.press(
        buttons[t("staff.btn_reject")].replace("reject", "done")
    )  # Completed: asks for the result
    prompt = desk.last_prompt()
    assert prompt["reply_markup"]["force_reply"] is True and prompt["reply_markup"]["selective"] is True
    assert prompt["entities"][0]["user"]["id"] == 100001
    assert (await desk.app(application.id)).status == "in_progress"  # not before the result is given

    await rauf.text("Kabel dəyişdirildi, işıq bərpa olundu.", reply_to=prompt["message_id"])
    await desk.worker.drain()
    done = await desk.app(application.id)
    assert done.status == "completed" and done.result == "Kabel dəyişdirildi, işıq bərpa olundu."
    told = desk.to_subscriber()[-1]
    assert application.number in told and "Kabel dəyişdirildi" in told
    assert any(
        "İcra olundu" not in m.get("text", "") and "icra olunub" in m.get("text", "")
        for m in desk.fake.sent_to(BAKI)
    )
    assert desk.fake.reactions[-1]["reaction"][0]["emoji"] == "👍"

    async with desk.db.transaction() as session:
        changes = (
            await session.scalars(select(StatusChange).where(StatusChange.application_id == application.id))
        ).all()
    assert [(c.new_status, c.actor) for c in changes] == [
        ("registered", "subscriber:telegram"),
        ("in_progress", "staff:100001"),
        ("completed", "staff:100001"),
    ]
    audit = [(a.action, a.allowed) for a in await desk.rows(StaffAction)]
    assert audit == [("take", True), ("in_progress", True), ("ask_completed", True), ("completed", True)]


async def test_the_subscriber_hears_in_their_own_language(desk: Desk) -> None:
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await chat.start(hint="ru")
    await chat.press("new")
    await chat.contact(PLAIN)
    await choose_account(chat)
    await chat.press("reason:no_power")
    await describe_and_finish(chat, "В квартире с утра нет света, у соседей есть.")
    await chat.press("send")
    await desk.worker.drain()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    await rauf.press(desk.buttons()[t("staff.btn_work")])
    await desk.worker.drain()
    assert "в работе" in desk.to_subscriber()[-1]


async def test_completed_without_a_result_is_impossible(desk: Desk) -> None:
    application = await desk.file()
    assert application.id is not None
    rauf = StaffMember(desk.fake, 100001, BAKI)
    await rauf.press(desk.buttons()[t("staff.btn_work")])
    await rauf.press(f"s:{application.id}:done")
    prompt = desk.last_prompt()
    await rauf.photo("AgAD-no-caption", reply_to=prompt["message_id"])  # a reply with no text
    assert (await desk.app(application.id)).status == "in_progress"
    answer = desk.fake.sent_to(BAKI)[-1]["text"]
    assert "nəticə mətnini yazın" in answer

    other = StaffMember(desk.fake, 100002, BAKI, "Aynur")
    await other.text("Mən yazaram: hər şey qaydasındadır.", reply_to=prompt["message_id"])
    assert (await desk.app(application.id)).status == "in_progress"  # the question was Rauf's
    assert "başqa əməkdaşa" in desk.fake.sent_to(BAKI)[-1]["text"]


async def test_an_illegal_step_is_refused_with_the_reason(desk: Desk) -> None:
    application = await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    await rauf.press(f"s:{application.id}:done")  # registered → completed skips the work
    toast = [p for m, p in desk.fake.calls if m == "answerCallbackQuery"][-1]
    assert toast["show_alert"] is True and "keçirmək olmaz" in toast["text"]
    assert (await desk.app(application.id or 0)).status == "registered"


# ---- who may act -----------------------------------------------------------------------------------


async def test_a_press_by_someone_not_on_the_staff_is_refused_and_recorded(desk: Desk) -> None:
    application = await desk.file()
    stranger = StaffMember(desk.fake, 777, BAKI, "Kənar")
    await stranger.press(desk.buttons()[t("staff.btn_take")])
    await stranger.text("Salam, bunu mən götürürəm", reply_to=desk.card()["message_id"])
    found = await desk.app(application.id or 0)
    assert found.assignee_id is None and found.status == "registered"
    toast = [p for m, p in desk.fake.calls if m == "answerCallbackQuery"][-1]
    assert toast["show_alert"] is True and "yalnız şöbənin əməkdaşları" in toast["text"]
    audit = [(a.user_id, a.action, a.allowed) for a in await desk.rows(StaffAction)]
    assert audit == [(777, "take", False), (777, "message", False)]
    assert not [r for r in await desk.rows(Notification) if r.kind == "staff_message"]


async def test_group_administrators_may_act_when_the_department_says_so(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    example = EXAMPLE_DEPARTMENTS
    text = example.replace("\nadmins_may_act = false", "\nadmins_may_act = true", 1)  # Baku's
    assert text != example
    fake.admins[BAKI] = [4242]
    async for desk in make_desk(fake, sample_db, clock, text):
        application = await desk.file()
        await StaffMember(fake, 4242, BAKI, "Admin").press(desk.buttons()[t("staff.btn_take")])
        assert (await desk.app(application.id or 0)).assignee_id == 4242
        await StaffMember(fake, 4343, BAKI, "Non-admin").press(desk.buttons()[t("staff.btn_work")])
        assert (await desk.app(application.id or 0)).status == "registered"


async def test_another_departments_application_is_refused(desk: Desk) -> None:
    application = await desk.file()  # Baku's
    ganja_staff = StaffMember(desk.fake, 100003, GENCE, "Gəncəli")
    await ganja_staff.press(f"s:{application.id}:take")  # a forged or forwarded button in Gəncə's chat
    assert (await desk.app(application.id or 0)).assignee_id is None
    audit = [(a.user_id, a.allowed, a.detail) for a in await desk.rows(StaffAction)]
    assert audit == [(100003, False, "belongs to department baki")]


async def test_forged_buttons_are_refused(desk: Desk) -> None:
    await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    for data in ("s:999999:take", "s:1:explode", "1|new", ""):
        await rauf.press(data)
    assert all(not a.allowed for a in await desk.rows(StaffAction))


# ---- messages both ways ----------------------------------------------------------------------------


async def test_messages_both_ways_with_photos(desk: Desk) -> None:
    from tests.fake_telegram import TelegramUser

    application = await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    await rauf.text("Sabah saat 10-da evdə olacaqsınız?", reply_to=desk.card()["message_id"])
    await desk.worker.drain()
    message = desk.fake.sent_to(SUBSCRIBER)[-1]
    assert "Bakı" in message["text"] and application.number in message["text"]
    assert "Sabah saat 10-da" in message["text"] and "Rauf" not in message["text"]  # the department speaks

    subscriber = TelegramUser(desk.fake, SUBSCRIBER)
    subscriber.seen = len(desk.fake.sent_to(SUBSCRIBER))
    answer = await subscriber.text("Bəli, evdə olacağam.", reply_to=message["message_id"])
    assert "şöbəyə göndərildi" in answer
    await desk.worker.drain()
    relayed = desk.fake.sent_to(BAKI)[-1]
    assert "Abonentdən" in relayed["text"] and "Bəli, evdə olacağam." in relayed["text"]
    assert relayed["reply_parameters"]["message_id"] == desk.card()["message_id"]

    await subscriber.photo("AgAD-meter", caption="Sayğacın şəkli", reply_to=message["message_id"])
    await desk.worker.drain()
    photo = desk.fake.sent_to(BAKI)[-1]
    assert (
        photo["method"] == "sendPhoto"
        and photo["photo"] == "AgAD-meter"
        and "Sayğacın şəkli" in photo["caption"]
    )

    await rauf.photo("AgAD-staff", caption="Bu sayğacdır?", reply_to=relayed["message_id"])
    await desk.worker.drain()
    back = desk.fake.sent_to(SUBSCRIBER)[-1]
    assert (
        back["method"] == "sendPhoto" and back["photo"] == "AgAD-staff" and "Bu sayğacdır?" in back["caption"]
    )


async def test_a_message_written_with_the_application_open_reaches_the_thread(desk: Desk) -> None:
    application = await desk.file()
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    listed = await chat.command("my")
    assert "nəticə 02.12.2026 13:00 tarixinədək gözlənilir" in listed  # 5 days after filing, Baku time
    shown = await chat.press(f"app:{application.id}")
    assert "Nəticə 02.12.2026 13:00 tarixinədək gözlənilir" in shown
    assert "şöbəyə göndərildi" in await chat.type("Qonşunun da işığı getdi.")
    await desk.worker.drain()
    assert "Qonşunun da işığı getdi." in desk.fake.sent_to(BAKI)[-1]["text"]


async def test_a_cancellation_is_said_in_the_thread(desk: Desk) -> None:
    application = await desk.file()
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await chat.command("my")
    await chat.press(f"app:{application.id}")
    await chat.press("cancel_app")
    await chat.press("cancel_yes")
    await desk.worker.drain()
    assert "geri götürdü" in desk.fake.sent_to(BAKI)[-1]["text"]
    assert "geri götürülüb" in desk.fake.edits[-1]["text"]
    buttons = [b["text"] for row in desk.fake.edits[-1]["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == [t("staff.btn_msg"), t("staff.btn_canned")]  # closed: only a message is left to send


# ---- forum topics ----------------------------------------------------------------------------------


async def test_forum_topic_mode(fake: FakeTelegram, sample_db: Database, clock: Clock) -> None:
    fake.forums.add(BAKI)
    async for desk in make_desk(fake, sample_db, clock):
        application = await desk.file()
        [(topic, name)] = fake.topics[BAKI]
        assert name.startswith(application.number) and "İşıq yoxdur" in name
        assert int(desk.card()["message_thread_id"]) == topic
        rauf = StaffMember(fake, 100001, BAKI)
        await rauf.text("Briqada yoldadır.", topic=topic)  # no reply needed inside the topic
        await desk.worker.drain()
        assert "Briqada yoldadır." in desk.to_subscriber()[-1]
        await StaffMember(fake, 100002, BAKI).text("Bu mesaj başqa mövzudadır", topic=topic + 99)
        await desk.worker.drain()
        assert "başqa mövzudadır" not in str(desk.to_subscriber())


# ---- deadlines -------------------------------------------------------------------------------------


async def test_each_deadline_is_flagged_once(desk: Desk) -> None:
    application = await desk.file()
    assert await desk.chat.desk.check_deadlines(desk.clock()) == 0
    desk.clock.advance(hours=4, minutes=1)
    assert await desk.chat.desk.check_deadlines(desk.clock()) == 1
    assert await desk.chat.desk.check_deadlines(desk.clock()) == 0
    await desk.worker.drain()
    assert "4 saatdır heç kim götürməyib" in desk.fake.sent_to(BAKI)[-1]["text"]

    rauf = StaffMember(desk.fake, 100001, BAKI)
    await rauf.press(desk.buttons()[t("staff.btn_work")])
    desk.clock.advance(days=5)
    assert await desk.chat.desk.check_deadlines(desk.clock()) == 1
    assert await desk.chat.desk.check_deadlines(desk.clock()) == 0
    await desk.worker.drain()
    assert "5 gün keçib" in desk.fake.sent_to(BAKI)[-1]["text"]

    await rauf.text("/open")
    assert f"⏰ {application.number}" in desk.fake.sent_to(BAKI)[-1]["text"]


# ---- commands --------------------------------------------------------------------------------------


async def test_open_find_and_stats(desk: Desk) -> None:
    first = await desk.file()
    desk.clock.advance(hours=1)
    second = await desk.file(SUBSCRIBER)
    rauf = StaffMember(desk.fake, 100001, BAKI)

    await rauf.text("/open")
    shown = desk.fake.sent_to(BAKI)[-1]["text"]
    assert "2" in shown.splitlines()[0]
    assert shown.index(first.number) < shown.index(second.number)  # oldest first
    assert "1 saat 0 dəq." in shown

    await rauf.text(f"/find {first.number}")
    assert first.number in desk.fake.sent_to(BAKI)[-1]["text"]
    await rauf.text("/find 0996510079")
    found = desk.fake.sent_to(BAKI)[-1]["text"]
    assert first.number in found and second.number in found
    await rauf.text("/find")
    assert "/find <" in desk.fake.sent_to(BAKI)[-1]["text"]
    await rauf.text("/find TX-2026-999999")
    assert "tapılmadı" in desk.fake.sent_to(BAKI)[-1]["text"]

    await rauf.press(f"s:{first.id}:work")
    desk.clock.advance(days=1)
    await rauf.press(f"s:{first.id}:reject")
    await rauf.text(
        "Bu, abonentin öz balansındakı avadanlıq deyil.", reply_to=desk.last_prompt()["message_id"]
    )
    await rauf.text("/stats@isiqbot_test_bot")
    stats = desk.fake.sent_to(BAKI)[-1]["text"]
    assert "qeydə alınıb: 1" in stats and "imtina edilib: 1" in stats
    assert "Son 7 gündə" in stats and "1 gün 1 saat" in stats

    stranger = StaffMember(desk.fake, 777, BAKI)
    await stranger.text("/open")
    assert "yalnız şöbənin əməkdaşları" in desk.fake.sent_to(BAKI)[-1]["text"]


async def test_a_staff_update_delivered_twice_has_one_effect(desk: Desk) -> None:
    application = await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    callback = {
        "callback_query": {
            "id": "cb-twice",
            "from": {"id": 100001, "is_bot": False, "first_name": "Rauf"},
            "chat_instance": "x",
            "message": {"message_id": 1, "date": 0, "chat": {"id": BAKI, "type": "supergroup"}},
            "data": f"s:{application.id}:work",
        }
    }
    first = desk.fake.push(callback)
    await desk.fake.processed(first)
    desk.fake.push(callback, first)
    await desk.fake.processed(first)
    assert rauf.id == 100001
    audit = [a.action for a in await desk.rows(StaffAction)]
    assert audit == ["in_progress"]


async def test_each_staff_chat_gets_the_staff_commands(desk: Desk) -> None:
    await desk.chat.set_commands()
    calls = [p for m, p in desk.fake.calls if m == "setMyCommands"]
    chats = sorted(int(p["scope"]["chat_id"]) for p in calls)
    assert chats == sorted([-1001000000001, -1001000000002, -1001000000003, -1001000000004, FALLBACK])
    assert [c["command"] for c in calls[0]["commands"]] == list(COMMANDS)  # /open, /find, /stats, …
    assert "Açıq müraciətlər" in calls[0]["commands"][0]["description"]


async def test_what_staff_cannot_send_is_explained(desk: Desk) -> None:
    application = await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    card = desk.card()["message_id"]
    await rauf.text("ş" * 3501, reply_to=card)
    assert "3501" in desk.fake.sent_to(BAKI)[-1]["text"]
    await rauf.text("Salam, kim növbətçidir?")  # not about any application: left alone
    assert "növbətçi" not in str(desk.fake.sent_to(BAKI)) and "növbətçi" not in str(desk.to_subscriber())
    await desk.worker.drain()
    assert not [r for r in await desk.rows(Notification) if r.kind == "staff_message"]
    assert (await desk.app(application.id or 0)).status == "registered"


async def test_the_card_shows_how_the_subscriber_was_told(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    down = f"http://127.0.0.1:{free_port()}/send"  # nothing listens: the SMS waits for its retry
    async for desk in make_desk(fake, sample_db, clock, SMS_GATEWAY_URL=down):
        await desk.file()
        assert "Abonentə bildiriş: SMS ⏳" in desk.card()["text"]
        blocked = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
        desk.fake.fail_next("sendmessage", 403, blocked)
        await StaffMember(desk.fake, 100001, BAKI).press(desk.buttons()[t("staff.btn_work")])
        await desk.worker.drain()
        assert "çat ✗" in desk.fake.edits[-1]["text"]  # staff see at once that the chat did not get it


async def test_a_card_waiting_for_its_retry_holds_back_only_its_own_application(desk: Desk) -> None:
    desk.fake.fail_next("sendmessage", 500, {"ok": False, "error_code": 500, "description": "Internal"})
    first = await desk.file()  # its card fails once and waits for the retry
    assert desk.fake.sent_to(BAKI) == []
    second = await desk.file(SUBSCRIBER)
    assert [m["text"].splitlines()[0] for m in desk.fake.sent_to(BAKI)] == [
        t("staff.card_title", number=second.number)
    ]
    desk.clock.advance(seconds=10)
    await desk.worker.drain()
    numbers = [m["text"].splitlines()[0] for m in desk.fake.sent_to(BAKI)]
    assert numbers == [t("staff.card_title", number=n) for n in (second.number, first.number)]


async def test_a_forum_without_the_right_to_make_topics_gets_the_card_as_a_thread(
    fake: FakeTelegram, sample_db: Database, clock: Clock
) -> None:
    fake.forums.add(BAKI)
    fake.fail_next(
        "createforumtopic",
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: not enough rights"},
    )
    async for desk in make_desk(fake, sample_db, clock):
        application = await desk.file()
        card = desk.card()
        assert application.number in card["text"] and "message_thread_id" not in card


async def test_take_is_refused_once_closed_and_a_reply_to_a_note_stays_with_staff(desk: Desk) -> None:
    application = await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI)
    desk.clock.advance(hours=5)
    await desk.chat.desk.check_deadlines(desk.clock())
    await desk.worker.drain()
    reminder = desk.fake.sent_to(BAKI)[-1]
    await rauf.text("Bu gün mən baxaram.", reply_to=reminder["message_id"])  # talk among staff
    await desk.worker.drain()
    assert "Bu gün mən baxaram." not in str(desk.to_subscriber())

    await rauf.press(f"s:{application.id}:reject")
    await rauf.text("Abonentin balansında deyil.", reply_to=desk.last_prompt()["message_id"])
    await rauf.press(f"s:{application.id}:take")
    toast = [p for m, p in desk.fake.calls if m == "answerCallbackQuery"][-1]
    assert toast["show_alert"] is True and t("status.rejected") in toast["text"]
    assert (await desk.app(application.id or 0)).assignee_id == 100001  # assigned by the rejection only


async def test_a_subscriber_cannot_flood_the_department_chat(desk: Desk) -> None:
    application = await desk.file()
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await chat.command("my")
    await chat.press(f"app:{application.id}")
    for n in range(10):
        assert t("app.message_sent", number=application.number) in await chat.type(
            f"Mesaj {n}: hələ işıq yoxdur."
        )
    refused = await chat.type("On birinci mesaj.")
    assert t("app.message_wait", minutes=10) in refused
    desk.clock.advance(minutes=11)
    assert t("app.message_sent", number=application.number) in await chat.type("İndi yenə yaza bilərəm.")
