"""The Telegram channel: the real aiogram client against a local fake Bot API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram.types import Update
from limits import RateLimitItemPerSecond
from sqlmodel import func, select

from bot.channels.port import HeldAnswers, Sent
from bot.channels.telegram import CHANNEL
from bot.channels.telegram.channel import SECRET_HEADER, TelegramChannel, webhook_handler
from bot.channels.telegram.client import TelegramClient, make_bot
from bot.channels.telegram.limits import Limits, SendingBudget
from bot.channels.telegram.mapping import map_update, within_64_bits
from bot.channels.telegram.render import Outgoing, render, split_text
from bot.core.service import Conversations
from bot.web.server import make_app
from dialogs.events import Command, Contact, File, Pressed, Text, Unsupported
from dialogs.ports import Subscriber
from dialogs.replies import Choice, Message, Outcome, Request
from locales import Msg, translate
from storage.db import Database
from storage.models import Application, Conversation, ProcessedUpdate, StaffAction
from tests.chat import BOTH, PLAIN, Chat, fill_residential
from tests.conftest import Clock
from tests.fake_telegram import TOKEN, FakeTelegram, TelegramUser
from tests.test_staff_chat import BAKI, make_desk


@pytest.fixture
async def channel(fake: FakeTelegram, service: Conversations) -> AsyncIterator[TelegramChannel]:
    bot = make_bot(TOKEN, fake.url)
    # One person's replies may go faster than Telegram's 1 a second here, so the flows run quickly;
    # the limits themselves are tested on their own (test_limits.py).
    budget = SendingBudget(TOKEN.split(":")[0], limits=Limits(private=RateLimitItemPerSecond(20)))
    client = TelegramClient(bot, service.db, service.clock, budget)
    yield TelegramChannel(client, service, HeldAnswers(CHANNEL, service.db, service.clock, lambda: None))
    await bot.session.close()


@pytest.fixture
async def polling(channel: TelegramChannel) -> AsyncIterator[TelegramChannel]:
    stop = asyncio.Event()
    task = asyncio.create_task(channel.poll(stop, long_poll_seconds=1))
    yield channel
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def t(key: str, **params: object) -> str:
    """A message as an Azerbaijani-speaking person sees it."""
    return translate(Msg(key, params), "az")


def user_subscriber(user: TelegramUser) -> Subscriber:
    return Subscriber("telegram", str(user.id))


async def count(db: Database, model: type) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_residential_application_by_polling(fake: FakeTelegram, polling: TelegramChannel) -> None:
    user = TelegramUser(fake, 501)
    assert "Azərişıq" in await user.text("/start")
    await user.press("Yeni müraciət")
    contact_request = fake.sent_to(501)[-1]  # one message: "share my number" and the choices under it
    keyboard = contact_request["reply_markup"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    assert [row[0]["text"] for row in keyboard[1:]] == [
        t("identify.by_code"),
        t("common.back"),
        t("common.cancel"),
    ]
    identified = await user.contact(PLAIN)
    assert "Məmmədov Elçin" in identified
    # PLAIN has one account: it is taken as it is, its data shown, and the reason asked at once.
    assert "168808605066007" in identified and t("reason.ask") in identified
    # One message for the turn: shared by its own one-time button, the contact keyboard hid itself.
    assert fake.sent_to(501)[-2] is contact_request
    assert "inline_keyboard" in fake.sent_to(501)[-1]["reply_markup"]
    await user.press(t("reason.no_power"))
    await user.text("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    await user.press(t("details.continue"))
    review = await user.press(t("contacts.ok"))
    assert "TX-2026-000001" in review
    assert "qeydə alındı" in await user.press(t("review.send"))
    assert await count(polling.service.db, Application) == 1
    answered = [p for m, p in fake.calls if m == "answerCallbackQuery"]
    assert len(answered) == 5  # every one of the 5 presses answered: no spinning buttons
    # 8 updates, 8 messages: one message for each.
    assert len(fake.sent_to(501)) == 8


async def test_a_contact_question_left_another_way_takes_its_keyboard_away(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    user = TelegramUser(fake, 502)
    await user.text("/start")
    await user.press("Yeni müraciət")
    assert fake.sent_to(502)[-1]["reply_markup"]["keyboard"][0][0]["request_contact"] is True
    await user.text("/start")  # a command leaves it: the welcome takes the keyboard away
    assert fake.sent_to(502)[-2]["reply_markup"] == {"remove_keyboard": True}
    assert "Azərişıq" in fake.sent_to(502)[-2]["text"]
    assert "inline_keyboard" in fake.sent_to(502)[-1]["reply_markup"]  # the menu's buttons right after
    await user.press("Yeni müraciət")
    before = len(fake.sent_to(502))
    await user.press(t("common.back"))  # the keyboard's own button: used, it hid itself
    back = fake.sent_to(502)[before:]
    assert len(back) == 1 and "inline_keyboard" in back[0]["reply_markup"]  # the menu, one message
    await user.press("Yeni müraciət")
    await user.press(t("identify.by_code"))  # a choice of the keyboard is read as that choice
    assert t("identify.ask_code") in fake.sent_to(502)[-1]["text"]


async def test_the_same_update_twice_has_one_effect(fake: FakeTelegram, polling: TelegramChannel) -> None:
    user = TelegramUser(fake, 502)
    await user.text("/start")
    update = user._message(text="/my")
    first = await user._do(update, update_id=900)
    rev_after_first = (await polling.service.handle(user_subscriber(user), None)).outcome.rev  # type: ignore[union-attr]
    again = await user._do(update, update_id=900)  # Telegram delivers it again
    assert "Hələ müraciətiniz yoxdur" in first
    assert again == "Hələ müraciətiniz yoxdur."  # the current question again, nothing done twice
    assert await count(polling.service.db, ProcessedUpdate) == 2
    assert (await polling.service.handle(user_subscriber(user), None)).outcome.rev == rev_after_first  # type: ignore[union-attr]


async def test_an_update_delivered_again_and_again_reshows_the_question_once(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    user = TelegramUser(fake, 504)
    await user.text("/start")
    update = user._message(text="/my")
    await user._do(update, update_id=901)
    before = len(fake.sent_to(504))
    for _ in range(4):
        await user._do(update, update_id=901)
    assert len(fake.sent_to(504)) == before + 1


async def test_someone_elses_contact_is_refused(fake: FakeTelegram, polling: TelegramChannel) -> None:
    user = TelegramUser(fake, 503)
    await user.text("/start")
    await user.press("Yeni müraciət")
    assert t("identify.contact_not_own") in await user.contact(PLAIN, owner=999)


async def test_tampered_and_old_buttons_are_answered_politely(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    user = TelegramUser(fake, 504)
    await user.text("/start")
    [(_, new_data), *_] = user.buttons()
    await user.press("Yeni müraciət")
    for data in ("garbage", "1|acc:1' OR 1=1", new_data, "99|menu"):
        shown = await user.press_data(data)
        assert t("error.stale_button") in shown, shown
    assert sum(1 for m, _ in fake.calls if m == "answerCallbackQuery") == 5


async def test_what_the_dialog_cannot_read_is_explained(fake: FakeTelegram, polling: TelegramChannel) -> None:
    user = TelegramUser(fake, 505)
    await user.text("/start")
    assert t("error.unsupported") in await user.sticker()


async def test_a_deep_link_opens_ones_own_application_and_no_one_elses(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    service = polling.service
    filed = Chat(service, user="601", channel="telegram")  # filed earlier from this Telegram account
    await fill_residential(filed)
    await filed.press("send")
    async with service.db.transaction() as session:
        application_id = await session.scalar(select(Application.id))
    assert application_id is not None
    token = service.links.token(application_id)
    assert len(f"/start {token}".split()[1]) <= 64

    owner = TelegramUser(fake, 601)
    shown = await owner.text(f"/start {token}")
    assert "TX-2026-000001" in shown and "Status: qeydə alınıb" in shown

    stranger = TelegramUser(fake, 602)
    shown = await stranger.text(f"/start {token}")
    assert "telefon nömrənizi təsdiqləyin" in shown and "TX-2026" not in shown
    shown = await stranger.contact(BOTH)
    assert "sizin müraciətinizə aid deyil" in shown and "TX-2026" not in shown
    assert "keçid etibarlı deyil" in await stranger.text("/start " + token[:-1] + "x")


async def test_a_429_is_waited_out_and_the_message_delivered(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    user = TelegramUser(fake, 506)
    fake.fail_next(
        "sendmessage",
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests",
            "parameters": {"retry_after": 1},
        },
    )
    fake.fail_next(
        "sendmessage", 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
    )
    assert "Azərişıq" in await user.text("/start")


async def test_commands_are_registered_in_every_language(
    fake: FakeTelegram, channel: TelegramChannel
) -> None:
    await channel.set_commands()
    calls = [p for m, p in fake.calls if m == "setMyCommands"]
    assert sorted(p.get("language_code", "") for p in calls) == ["", "az", "en", "ru"]
    az = next(p for p in calls if p.get("language_code") == "az")
    assert [c["command"] for c in az["commands"]] == ["start", "new", "my", "cancel", "lang", "help"]
    assert az["commands"][1]["description"] == "Yeni müraciət"


async def test_webhook_needs_the_secret_and_answers_after_storing(
    fake: FakeTelegram, channel: TelegramChannel, unused_tcp_port: int
) -> None:
    runner = aiohttp.web.AppRunner(
        make_app(channel.service.db, [("POST", "/telegram/webhook", webhook_handler(channel, "s3cret_X"))])
    )
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    url = f"http://127.0.0.1:{unused_tcp_port}/telegram/webhook"
    user = TelegramUser(fake, 507)
    update = {"update_id": 77, **user._message(text="/start")}
    try:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {SECRET_HEADER: "wrong"}):
                async with http.post(url, json=update, headers=headers) as response:
                    assert response.status == 401
            assert await count(channel.service.db, ProcessedUpdate) == 0  # nothing stored
            async with http.post(url, data=b"{not json", headers={SECRET_HEADER: "s3cret_X"}) as response:
                assert response.status == 400
            for _ in range(2):  # and a re-delivery does nothing more
                async with http.post(url, json=update, headers={SECRET_HEADER: "s3cret_X"}) as response:
                    assert response.status == 200
    finally:
        await runner.cleanup()
    assert "Azərişıq" in user.replies()
    texts = [m["text"] for m in fake.sent_to(507)]
    assert texts[0].startswith("Salam!") and texts[1:] == [
        "Nə etmək istəyirsiniz?"
    ]  # the welcome with its question, and again: the question only
    assert await count(channel.service.db, ProcessedUpdate) == 1


async def post_all(
    channel: TelegramChannel, port: int, updates: list[dict[str, object]], bodies: list[str] | None = None
) -> list[int]:
    """Each update posted to the webhook, its lone surrogates escaped ("\\ud800") as JSON allows;
    the responses' bodies in `bodies`."""
    runner = aiohttp.web.AppRunner(
        make_app(channel.service.db, [("POST", "/telegram/webhook", webhook_handler(channel, "s"))])
    )
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    statuses = []
    try:
        async with aiohttp.ClientSession() as http:
            for update in updates:
                body = json.dumps(update).encode()
                url = f"http://127.0.0.1:{port}/telegram/webhook"
                async with http.post(url, data=body, headers={SECRET_HEADER: "s"}) as response:
                    statuses.append(response.status)
                    if bodies is not None:
                        bodies.append(await response.text())
    finally:
        await runner.cleanup()
    return statuses


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


async def test_webhook_lone_surrogates_and_ids_beyond_64_bits_are_no_500(
    fake: FakeTelegram, channel: TelegramChannel, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the chaos suite (tests/chaos/test_hostile.py): "\\ud800" is valid JSON but no character,
    and a press whose id held one made its answer to Telegram fail (500, a traceback): lone surrogates
    become U+FFFD. An id beyond 64 bits, which no Telegram update has, made PostgreSQL refuse the
    conversation (an error logged) where SQLite kept it: such an update is refused, 400."""
    user = TelegramUser(fake, 508)
    press = {
        "id": "\ud800",
        "from": user._sender(),
        "chat_instance": "\udfff",
        "data": "1|\udcff",
        "message": {"message_id": 1, "date": 0, "chat": {"id": 508, "type": "private"}},
    }
    updates = [
        {"update_id": 1, **user._message(text="/start \ud800")},
        {"update_id": 2, "callback_query": press},
        {"update_id": 3, **user._message(text="x\udfff\x00y", extra={"k\ud800": "\udc80"})},
        {"update_id": 10**200, **user._message(text="/start")},
        {"update_id": 4, **TelegramUser(fake, 10**80)._message(text="/start")},
        {"update_id": 5, "callback_query": {**press, "id": "5", "from": {**user._sender(), "id": -(10**70)}}},
    ]
    bodies: list[str] = []
    assert await post_all(channel, unused_tcp_port, updates, bodies) == [200, 200, 200, 400, 400, 400]
    assert errors(caplog) == []
    assert await count(channel.service.db, ProcessedUpdate) == 3  # the ids beyond 64 bits: none stored
    assert await count(channel.service.db, Conversation) == 1
    # The press is answered in the webhook's response (Telegram makes the call), its id as a UTF-8
    # reader reads it; no call of its own.
    assert json.loads(bodies[1]) == {"method": "answerCallbackQuery", "callback_query_id": "\ufffd"}
    assert [m for m, _ in fake.calls if m == "answerCallbackQuery"] == []
    assert user.replies().count("Nə etmək istəyirsiniz?") == 3  # each one answered with the question


async def test_webhook_presses_in_a_staff_chat_with_a_nul_or_an_id_beyond_64_bits_are_no_500(
    fake: FakeTelegram,
    sample_db: Database,
    clock: Clock,
    unused_tcp_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the chaos suite: a press in a staff chat is recorded with the name and id of who pressed.
    A name holding U+0000 failed on PostgreSQL, an id beyond 64 bits on SQLite: a 500, a traceback."""
    async for desk in make_desk(fake, sample_db, clock):
        held = HeldAnswers(CHANNEL, desk.service.db, desk.clock, lambda: None)
        channel = TelegramChannel(desk.chat.client, desk.service, held, desk.chat)
        press = {
            "id": "7",
            "chat_instance": "1",
            "data": "1|take",
            "message": {"message_id": 1, "date": 0, "chat": {"id": BAKI, "type": "supergroup"}},
        }
        updates = [
            {
                "update_id": 1,
                "callback_query": press | {"from": {"id": 42, "is_bot": False, "first_name": "R\x00uf"}},
            },
            {
                "update_id": 2,
                "callback_query": press | {"from": {"id": 2**64, "is_bot": False, "first_name": "R"}},
            },
        ]
        assert await post_all(channel, unused_tcp_port, updates) == [200, 400]
        actions = await desk.rows(StaffAction)
    assert [(a.user_id, a.user_name, a.allowed) for a in actions] == [(42, "R\ufffduf", False)]
    assert errors(caplog) == []


# ---- the mappers and the renderer, on their own ------------------------------------------------


def _update(**fields: object) -> Update:
    return Update.model_validate({"update_id": 1, **fields})


def _message(**content: object) -> dict[str, object]:
    return {
        "message_id": 1,
        "date": 0,
        "chat": {"id": 42, "type": "private"},
        "from": {"id": 42, "is_bot": False, "first_name": "A", "language_code": "ru"},
        **content,
    }


def test_an_update_with_an_integer_beyond_64_bits_is_none_of_telegrams() -> None:
    assert within_64_bits(_update(message=_message(text="x", chat={"id": -(2**63), "type": "supergroup"})))
    press = {"id": "1", "chat_instance": "1", "data": "1|take", "from": {"id": 2**63 - 1, "is_bot": False}}
    press["message"] = {"message_id": 1, "date": 0, "chat": {"id": -1001000000001, "type": "supergroup"}}
    assert within_64_bits(_update(callback_query=press | {"from": {**press["from"], "first_name": "A"}}))
    for beyond in (2**63, -(2**63) - 1, 10**200):
        assert not within_64_bits(_update(update_id=beyond))
        sender = {"id": beyond, "is_bot": False, "first_name": "A"}
        assert not within_64_bits(_update(callback_query=press | {"from": sender}))  # a staff chat's
        assert not within_64_bits(_update(message=_message(text="x", isiqbot={"n": [beyond]})))  # unknown


def test_messages_map_to_neutral_events() -> None:
    cases = {
        "/start": Command("start"),
        "/start@isiqbot_test_bot abc-123": Command("start", "abc-123"),
        "/LANG en": Command("lang", "en"),
        "salam": Text("salam"),
    }
    for text, event in cases.items():
        inbound = map_update(_update(message=_message(text=text)))
        assert inbound is not None and inbound.event == event, text
        assert inbound.subscriber.user_key == "42" and inbound.language == "ru"
    own = map_update(
        _update(message=_message(contact={"phone_number": "+994", "first_name": "A", "user_id": 42}))
    )
    other = map_update(
        _update(message=_message(contact={"phone_number": "+994", "first_name": "A", "user_id": 7}))
    )
    assert own is not None and own.event == Contact("+994", own=True)
    assert other is not None and other.event == Contact("+994", own=False)
    sticker = {"file_id": "s", "file_unique_id": "s", "width": 1, "height": 1, "is_animated": False}
    sticker |= {"is_video": False, "type": "regular"}
    stuck = map_update(_update(message=_message(sticker=sticker)))
    assert stuck is not None and stuck.event == Unsupported("sticker")


def test_voice_notes_and_documents_map_with_their_type_and_size() -> None:
    """Regression: a voice note or a document was Unsupported; now the dialog checks type and size."""
    voice = {
        "file_id": "v1",
        "file_unique_id": "v",
        "duration": 3,
        "mime_type": "audio/ogg",
        "file_size": 9000,
    }
    mapped = map_update(_update(message=_message(voice=voice)))
    assert mapped is not None and mapped.event == File("voice", "v1", "audio/ogg", 9000)
    document = {
        "file_id": "d1",
        "file_unique_id": "d",
        "file_name": "akt.pdf",
        "mime_type": "application/pdf",
    }
    mapped = map_update(_update(message=_message(document={**document, "file_size": 2048}, caption="Akt")))
    assert mapped is not None
    assert mapped.event == File("document", "d1", "application/pdf", 2048, "akt.pdf", caption="Akt")
    video = {"file_id": "m", "file_unique_id": "m", "width": 1, "height": 1, "duration": 1}
    mapped = map_update(_update(message=_message(video=video)))
    assert mapped is not None and mapped.event == Unsupported("video")
    gif = {"file_id": "g", "file_unique_id": "g", "width": 1, "height": 1, "duration": 1}
    mapped = map_update(
        _update(message=_message(animation=gif, document={"file_id": "g", "file_unique_id": "g"}))
    )
    assert mapped is not None and mapped.event == Unsupported("animation")  # a GIF is a video, not a document


def test_group_chats_and_bots_are_not_subscribers() -> None:
    group = _message(text="/start")
    group["chat"] = {"id": -100, "type": "supergroup", "title": "Heyət"}
    assert map_update(_update(message=group)) is None
    bot = _message(text="hi")
    bot["from"] = {"id": 9, "is_bot": True, "first_name": "B"}
    assert map_update(_update(message=bot)) is None


def test_callback_data_is_parsed_or_refused() -> None:
    def press(data: str) -> object:
        query = {
            "id": "q",
            "from": {"id": 42, "is_bot": False, "first_name": "A"},
            "chat_instance": "c",
            "data": data,
        }
        query["message"] = {"message_id": 1, "date": 0, "chat": {"id": 42, "type": "private"}}
        inbound = map_update(_update(callback_query=query))
        assert inbound is not None and inbound.callback_id == "q"
        return inbound.event

    assert press("12|acc:7") == Pressed("acc:7", 12)
    assert press("acc:7") == Pressed("", None)
    assert press("12|<b>") == Pressed("", None)


def test_render_keyboards_and_limits() -> None:
    question = Message(
        (Msg("identify.ask_phone"),),
        (Choice("by_code", Msg("identify.by_code")), Choice("back", Msg("common.back"))),
        request=Request.CONTACT,
    )
    out = render(Outcome((question,), rev=123456789, changed=True), "az")
    assert len(out) == 1  # the choices are buttons of the same keyboard, under "share my number"
    keyboard = out[0].markup.keyboard  # type: ignore[union-attr]
    assert keyboard[0][0].request_contact
    assert [row[0].text for row in keyboard[1:]] == [t("identify.by_code"), t("common.back")]
    menu = Message((Msg("menu.prompt"),), (Choice("new", Msg("menu.new")),))
    buttons = render(Outcome((menu,), rev=123456789, changed=True), "az")[0].markup.inline_keyboard  # type: ignore[union-attr]
    assert [b[0].callback_data for b in buttons] == ["123456789|new"]
    assert all(len(b[0].callback_data.encode()) <= 64 for b in buttons)
    long_text = "\n".join("sətir " * 50 for _ in range(100))
    pieces = split_text(long_text)
    assert len(pieces) > 1 and all(len(p) <= 4096 for p in pieces)
    assert "".join(p.replace("\n", "") for p in pieces) == long_text.replace("\n", "")
    plain = render(
        Outcome((Message((Msg("review.description", {"text": "<b>x</b> &amp;"}),)),), 1, False), "az"
    )
    assert [o.text for o in plain] == ["Təsvir: <b>x</b> &amp;"]  # plain text: nothing is read as markup


async def test_fifty_chats_at_once_each_in_its_own_order(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    users = [TelegramUser(fake, 1000 + n) for n in range(50)]
    last = 0
    for user in users:  # all queued before the bot fetches them: one batch, many chats
        fake.push(user._message(text="/help"))
        last = fake.push(user._message(text="/my"))
    await fake.processed(last, within=60)
    for user in users:
        texts = [m["text"] for m in fake.sent_to(user.id)]
        assert len(texts) == 2, texts
        assert texts[0].startswith("Bu bot vasitəsilə")  # /help with its question, then /my
        assert texts[0].endswith("\n\nNə etmək istəyirsiniz?")
        assert texts[1].startswith("Hələ müraciətiniz yoxdur")


@pytest.mark.parametrize(
    ("status", "description", "reason"),
    [
        (403, "Forbidden: bot was blocked by the user", "blocked"),
        (400, "Bad Request: chat not found", "chat_not_found"),
    ],
)
async def test_an_unreachable_chat_is_recorded_then_cleared(
    fake: FakeTelegram, polling: TelegramChannel, status: int, description: str, reason: str
) -> None:
    from storage import conversations

    user = TelegramUser(fake, 508)
    fake.fail_next("sendmessage", status, {"ok": False, "error_code": status, "description": description})
    await user.text("/start")
    async with polling.service.db.transaction() as session:
        row = await conversations.get(session, "telegram", "508")
        assert row is not None and row.unreachable_reason == reason and row.unreachable_at is not None
    await user.text("/my")  # the person writes again: reachable again
    async with polling.service.db.transaction() as session:
        row = await conversations.get(session, "telegram", "508")
        assert row is not None and row.unreachable_at is None


async def test_an_answer_whose_turn_does_not_come_in_time_is_handed_to_the_outbox(
    fake: FakeTelegram, service: Conversations
) -> None:
    # The bot's budget spent for the next ten seconds (another process's storm, say).
    budget = SendingBudget(TOKEN.split(":")[0], limits=Limits(everyone=RateLimitItemPerSecond(1, 10)))
    client = TelegramClient(make_bot(TOKEN, fake.url), service.db, service.clock, budget)
    try:
        assert await client.send(601, Outgoing("Salam")) == Sent.SENT
        assert await client.send(602, Outgoing("Salam"), within=0.3) == Sent.LATER  # not held longer
    finally:
        await client.close()
    assert [m["chat_id"] for m in fake.sent] == ["601"]


async def test_a_message_telegram_refuses_does_not_stop_the_bot(
    fake: FakeTelegram, polling: TelegramChannel
) -> None:
    user = TelegramUser(fake, 509)
    fake.fail_next(
        "sendmessage",
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
    )
    await user.text("/start")
    assert "Hələ müraciətiniz yoxdur" in await user.text("/my")  # polling goes on
