"""WhatsApp: Cloud API webhooks posted to the running server, a local fake Graph API, the real database."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select

from bot.app import build
from bot.channels.telegram.connector import Telegram
from bot.channels.whatsapp import CHANNEL
from bot.channels.whatsapp.channel import Pacer, WhatsAppChannel
from bot.channels.whatsapp.connector import WhatsApp
from bot.channels.whatsapp.mapping import map_message
from bot.channels.whatsapp.payload import Value, WaMessage
from bot.channels.whatsapp.render import render
from bot.core.links import LinkSigner, PublicLinks
from bot.core.service import Conversations
from bot.notify.outbox import OutboxWorker
from bot.staff.desk import StaffDesk
from bot.web.server import make_app
from dialogs.catalog import REASONS
from dialogs.events import File, Unsupported
from dialogs.lifecycle import Status
from dialogs.replies import Choice, Message, Outcome
from locales import Msg, translate
from storage import outbox
from storage.db import Database
from storage.models import Application, Conversation, Notification, ProcessedUpdate
from tests.assembly import EXAMPLE_DEPARTMENTS, FAST, settings_in
from tests.chat import CHAIN, PLAIN, SmsRecorder
from tests.conftest import Clock
from tests.fake_graph import (
    APP_SECRET,
    GRAPH_TOKEN,
    IMAGE,
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    FakeGraph,
    WaUser,
    sign,
    status_payload,
)
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.processes import free_port
from tests.running import choose_account, file_in_whatsapp

ROOT = Path(__file__).resolve().parents[1]
LINK_SECRET = "whatsapp-test-secret-0123456789abcd"
LINKS = PublicLinks(LinkSigner(LINK_SECRET.encode()), "https://bot.azerisiq.az")
BAKI = -1001000000001


@dataclass
class Wa:
    graph: FakeGraph
    service: Conversations
    channel: WhatsAppChannel
    worker: OutboxWorker
    clock: Clock
    sms: SmsRecorder
    webhook: str
    fake: FakeTelegram

    def user(self, wa_id: str | None, user_id: str | None = None) -> WaUser:
        return WaUser(self.graph, self.webhook, wa_id, user_id, settle=self.channel.settle)

    async def rows(self, model: type) -> list[Any]:
        async with self.service.db.transaction() as session:
            return list((await session.scalars(select(model))).all())


async def make_wa(
    sample_db: Database, clock: Clock, fake: FakeTelegram, template: str | None = None
) -> AsyncIterator[Wa]:
    """The service as `isiqbot run` builds it, with WhatsApp and Telegram staff chats, on a test clock."""
    graph = FakeGraph()
    await graph.start()
    sms = SmsRecorder()
    with tempfile.TemporaryDirectory() as folder:
        settings = settings_in(
            Path(folder),
            EXAMPLE_DEPARTMENTS,
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_URL=fake.url,
            WHATSAPP_TOKEN=GRAPH_TOKEN,
            WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
            WHATSAPP_APP_SECRET=APP_SECRET,
            WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
            WHATSAPP_API_URL=graph.url,
            WHATSAPP_TEMPLATE=template,
            PUBLIC_BASE_URL=LINKS.base_url,
            LINK_SECRET=LINK_SECRET,
        )
        service = await build(settings, db=sample_db, clock=clock, code_sms=sms, pace=FAST)
    telegram, whatsapp = service.channels["telegram"], service.channels["whatsapp"]
    assert isinstance(telegram, Telegram) and isinstance(whatsapp, WhatsApp)
    stop = asyncio.Event()
    polling = asyncio.create_task(telegram.channel.poll(stop, long_poll_seconds=1))
    app = make_app(sample_db, service.routes)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    webhook = f"http://127.0.0.1:{port}/whatsapp/webhook"
    yield Wa(graph, service.conversations, whatsapp.channel, service.worker, clock, sms, webhook, fake)
    stop.set()
    polling.cancel()
    await asyncio.gather(polling, return_exceptions=True)
    await runner.cleanup()
    await service.close()
    await graph.stop()


@pytest.fixture
async def wa(sample_db: Database, clock: Clock, fake: FakeTelegram) -> AsyncIterator[Wa]:
    async for made in make_wa(sample_db, clock, fake):
        yield made


# ---- the webhook itself ----------------------------------------------------------------------------


async def test_the_verify_handshake(wa: Wa) -> None:
    async with aiohttp.ClientSession() as http:
        query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
        async with http.get(wa.webhook, params=query) as r:
            assert r.status == 200 and await r.text() == "1158201444"
        async with http.get(wa.webhook, params={**query, "hub.verify_token": "wrong"}) as r:
            assert r.status == 403
        async with http.get(wa.webhook) as r:
            assert r.status == 403


async def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(wa: Wa) -> None:
    user = wa.user("994996510079")
    payload = user.envelope(type="text", text={"body": "Salam"})
    body = json.dumps(payload).encode()
    assert await user.post(payload, signature=sign(body, "another-secret")) == 401
    assert await user.post(payload, signature="sha256=" + "0" * 64) == 401
    async with aiohttp.ClientSession() as http, http.post(wa.webhook, data=body) as r:
        assert r.status == 401  # no signature at all
    assert wa.graph.sent == [] and await wa.rows(Notification) == []


async def test_what_is_not_a_webhook_gets_400(wa: Wa) -> None:
    user = wa.user("994996510079")
    for body in (
        b"{not json",
        b'{"entry": []}',
        b"[]",
        b'{"object": "x", "entry": [{"changes": [{"value": 5}]}]}',
    ):
        async with (
            aiohttp.ClientSession() as http,
            http.post(wa.webhook, data=body, headers={"X-Hub-Signature-256": sign(body)}) as r,
        ):
            assert r.status == 400, body
    assert user.replies() == []


async def test_the_same_wamid_twice_has_one_effect(wa: Wa) -> None:
    user = wa.user("994996510079")
    await user.text("Salam")
    await user.press("new")
    await user.press("99 651 00 79")  # "use my number": WhatsApp has verified it
    first = await user.text("/cancel", wamid="wamid.SAME")
    again = await user.text("/cancel", wamid="wamid.SAME")
    assert first and again  # answered both times: the second shows the current question
    async with wa.service.db.transaction() as session:
        seen = (
            await session.scalars(select(ProcessedUpdate).where(ProcessedUpdate.update_id == "wamid.SAME"))
        ).all()
    assert len(seen) == 1


async def test_a_replayed_signed_body_shows_the_question_once_more_and_then_nothing(wa: Wa) -> None:
    user = wa.user("994996510079")
    await user.text("Salam")
    captured = user.envelope(type="text", text={"body": "/my"}, id="wamid.CAPTURED")
    assert await user._do(captured)  # the real message: answered
    before = len(wa.graph.sent_to(user.key))
    for _ in range(5):  # someone re-posts the captured, validly signed body
        assert await user.post(captured) == 200
        await wa.channel.settle()
    assert len(wa.graph.sent_to(user.key)) == before + 1  # the current question once, then nothing
    [seen] = [r for r in await wa.rows(ProcessedUpdate) if r.update_id == "wamid.CAPTURED"]
    assert seen.reshown_at is not None


async def test_unsupported_messages_get_a_polite_answer(wa: Wa) -> None:
    user = wa.user("994996510079")
    shown = await user.sticker()
    assert translate(Msg("error.unsupported"), "az") in shown


# ---- whole applications ----------------------------------------------------------------------------


async def test_a_residential_application_in_whatsapp(wa: Wa) -> None:
    user = wa.user("994996510079")
    assert "Azərişıq" in await user.text("Salam")
    await user.press("new")
    identified = await user.press("99 651 00 79")
    assert "Məmmədov Elçin" in identified
    # PLAIN has one account: it is taken as it is, its data shown, and the reason asked at once.
    assert "168808605066007" in identified and translate(Msg("reason.ask"), "az") in identified
    assert not any("|acc:" in option_id for option_id, _ in user.options())
    await user.press("reason:no_power")  # 9 choices: a list
    assert wa.graph.sent_to(user.key)[-1]["interactive"]["type"] in ("button", "list")
    await user.text("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    await user.press("done")
    review = await user.press("ok")
    assert "TX-2026-000001" in review
    assert "qeydə alındı" in await user.press("send")
    [application] = await wa.rows(Application)
    assert (application.channel, application.user_key, application.mobile) == (CHANNEL, "994996510079", PLAIN)
    for message in wa.graph.sent:
        if message["type"] == "interactive":
            interactive = message["interactive"]
            assert len(interactive["body"]["text"]) <= 1024
            if interactive["type"] == "button":
                titles = [b["reply"]["title"] for b in interactive["action"]["buttons"]]
                assert (
                    len(titles) <= 3 and all(len(t) <= 20 for t in titles) and len(set(titles)) == len(titles)
                )
            else:
                rows = [r for s in interactive["action"]["sections"] for r in s["rows"]]
                assert len(rows) <= 10 and all(len(r["title"]) <= 24 for r in rows)
                assert all(len(r.get("description", "")) <= 72 for r in rows)


async def test_a_non_residential_application_with_twelve_metering_points(wa: Wa) -> None:
    user = wa.user(CHAIN.removeprefix("+"))
    await user.text("Salam")
    await user.press("new")
    await user.press("77 860 46 92")
    await choose_account(user, "5412017015")  # CHAIN's one main code is taken as it is
    listed = [title for _, title in user.options()]
    assert len(listed) <= 10
    more = [option_id for option_id, _ in user.options() if option_id.startswith("more|")]
    assert more, user.options()  # 8 points, next, back, cancel: more than a list holds
    next_page = next(option_id for option_id, _ in user.options() if option_id.endswith("|page:1"))
    await user.press_id(more[0], "More")
    rest = [option_id for option_id, _ in user.options()]
    assert [r.split("|", 1)[1] for r in rest] == ["back", "cancel"]  # the rows after the first nine
    await user.press_id(next_page, "Next")  # a row of the earlier list still works: same question
    points = [option_id for option_id, _ in user.options() if "|mp:" in option_id]
    assert len(points) == 4  # the last four of twelve
    await user.press(user.options()[0][0].split("|", 1)[1])
    await user.press("reason:faulty_meter")
    await user.text("Sayğac ekranı yanmır, göstəriciləri oxumaq olmur.")
    await user.press("done")
    await user.press("ok")
    assert "qeydə alındı" in await user.press("send")
    [application] = await wa.rows(Application)
    assert application.kind == "non_residential" and application.metering_point_code is not None


async def test_a_user_whose_number_is_withheld_confirms_one_by_sms(wa: Wa) -> None:
    user = wa.user(None, user_id="AZ.1234567890abcdef")
    await user.text("Salam")
    asked = await user.press("new")
    assert not any("wa_phone" in option_id for option_id, _ in user.options())  # no number to offer
    assert asked
    await user.text("+994 99 651 00 79")
    code = wa.sms.sent[-1][1].params["code"]
    assert wa.sms.sent[-1][0] == PLAIN
    assert "Məmmədov Elçin" in await user.text(str(code))
    [conversation] = await wa.rows(Conversation)
    assert conversation.user_key == "AZ.1234567890abcdef"


# ---- notifications: the window, templates, statuses ------------------------------------------------


async def file_quickly(wa: Wa, user: WaUser) -> None:
    await file_in_whatsapp(user, "99 651 00 79", "168808605066007")


async def test_a_status_message_inside_the_window_is_free_text(wa: Wa) -> None:
    user = wa.user("994996510079")
    await file_quickly(wa, user)
    await StaffDesk(wa.service.db, clock=wa.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await wa.worker.drain()
    last = wa.graph.sent_to(user.key)[-1]
    assert last["type"] == "text" and "icradadır" in last["text"]["body"]
    [row] = [r for r in await wa.rows(Notification) if r.channel == CHANNEL]
    assert row.state == "sent" and row.provider_id == last["id"]

    await user.post(status_payload(last["id"], "delivered", user.key))
    [row] = [r for r in await wa.rows(Notification) if r.channel == CHANNEL]
    assert row.state == "delivered"


async def test_outside_the_window_without_a_template_the_news_goes_by_sms(wa: Wa) -> None:
    user = wa.user("994996510079")
    await file_quickly(wa, user)
    wa.clock.advance(hours=25)
    await StaffDesk(wa.service.db, clock=wa.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await wa.worker.drain()
    assert wa.graph.sent_to(user.key)[-1]["type"] != "template"
    rows = await wa.rows(Notification)
    [chat] = [r for r in rows if r.channel == CHANNEL]
    assert chat.state == "failed" and "24-hour" in (chat.last_error or "")
    assert [r.kind for r in rows if r.channel == outbox.SMS] == ["sms_registered", "sms_fallback"]


async def test_outside_the_window_the_template_carries_the_news(
    sample_db: Database, clock: Clock, fake: FakeTelegram
) -> None:
    async for wa in make_wa(sample_db, clock, fake, template="isiqbot_status"):
        user = wa.user("994996510079")
        await file_quickly(wa, user)
        wa.clock.advance(hours=30)
        await StaffDesk(wa.service.db, clock=wa.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
        await wa.worker.drain()
        last = wa.graph.sent_to(user.key)[-1]
        assert last["type"] == "template" and last["template"]["name"] == "isiqbot_status"
        assert last["template"]["language"]["code"] == "az"
        parameters = [p["text"] for p in last["template"]["components"][0]["parameters"]]
        assert parameters[0] == "TX-2026-000001" and parameters[1] == "icradadır"
        assert parameters[2].startswith("https://bot.azerisiq.az/a/")


async def test_a_failed_status_falls_back_to_sms(wa: Wa) -> None:
    user = wa.user("994996510079")
    await file_quickly(wa, user)
    await StaffDesk(wa.service.db, clock=wa.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await wa.worker.drain()
    wamid = wa.graph.sent_to(user.key)[-1]["id"]
    assert await user.post(status_payload(wamid, "failed", user.key, error=131026)) == 200
    rows = await wa.rows(Notification)
    [chat] = [r for r in rows if r.channel == CHANNEL]
    assert chat.state == "failed" and "131026" in (chat.last_error or "")
    assert [r.kind for r in rows if r.channel == outbox.SMS][-1] == "sms_fallback"


async def test_an_answer_whatsapp_does_not_take_in_time_waits_in_the_outbox_and_keeps_its_order(
    wa: Wa,
) -> None:
    """The channels' one rule: tried on the spot for 3 s, then the outbox, and later answers behind it."""
    user = wa.user("994996510079")
    for _ in range(4):  # 0.25 + 0.5 + 1 s of retries, then a 2 s pause would pass the 3 s
        wa.graph.fail_next(503, 2, "Service temporarily unavailable")
    assert await user.text("Salam") == ""  # the welcome could not leave
    held = [r for r in await wa.rows(Notification) if r.kind == outbox.REPLY]
    assert held and {(r.channel, r.user_key, r.state) for r in held} == {(CHANNEL, user.key, "queued")}
    assert await user.text("salam") == ""  # WhatsApp is fine again, but this answer goes behind
    replies = [r for r in await wa.rows(Notification) if r.kind == outbox.REPLY]
    assert len(replies) > len(held)
    await wa.worker.drain()
    sent = wa.graph.sent_to(user.key)
    assert [
        {k: v for k, v in m.items() if k not in ("id", "to", "messaging_product", "recipient_type")}
        for m in sent
    ] == [r.payload["body"] for r in sorted(replies, key=lambda r: r.id)]
    assert {r.state for r in await wa.rows(Notification) if r.kind == outbox.REPLY} == {"sent"}
    assert "Yeni müraciət" in json.dumps(sent[: len(held)], ensure_ascii=False)  # the menu came first


async def test_rate_limits_are_backed_off_and_retried(wa: Wa) -> None:
    user = wa.user("994996510079")
    await file_quickly(wa, user)
    wa.graph.fail_next(400, 130429, "Rate limit hit")
    await StaffDesk(wa.service.db, clock=wa.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await wa.worker.drain()
    [row] = [r for r in await wa.rows(Notification) if r.channel == CHANNEL]
    assert row.state == "queued" and "130429" in (row.last_error or "")
    wa.clock.advance(seconds=10)
    await wa.worker.drain()
    [row] = [r for r in await wa.rows(Notification) if r.channel == CHANNEL]
    assert row.state == "sent"


# ---- the staff chat serves WhatsApp too ------------------------------------------------------------


async def test_staff_see_a_whatsapp_application_with_its_photo_and_answer_it(wa: Wa) -> None:
    user = wa.user("994996510079")
    await user.text("Salam")
    await user.press("new")
    await user.press("99 651 00 79")
    await choose_account(user, "168808605066007")
    await user.press("reason:damaged_cable")
    await user.text("Dirəkdən gələn kabel qopub, yerdə qalıb.")
    await user.image("1234567890123456", caption="kabel")
    await user.press("done")
    await user.press("ok")
    await user.press("send")
    await wa.worker.drain()
    sent = wa.fake.sent_to(BAKI)
    assert [m["method"] for m in sent] == ["sendPhoto"]  # the photo is the card, fetched from WhatsApp
    assert "WhatsApp" in sent[0]["caption"] and wa.graph.media_requests == ["1234567890123456"]

    from tests.fake_telegram import StaffMember

    await StaffMember(wa.fake, 100001, BAKI).text("Usta sabah gələcək.", reply_to=sent[0]["message_id"])
    await wa.worker.drain()
    message = wa.graph.sent_to(user.key)[-1]
    assert message["type"] == "text" and "Usta sabah gələcək." in message["text"]["body"]
    answer = await user.text("Təşəkkür edirəm, gözləyirəm.", reply_to=message["id"])
    assert "şöbəyə göndərildi" in answer
    await wa.worker.drain()
    assert "Təşəkkür edirəm" in wa.fake.sent_to(BAKI)[-1]["text"]


# ---- rendering -------------------------------------------------------------------------------------


def _choices(n: int) -> tuple[Choice, ...]:
    """`n` choices; past the seven reasons the labels repeat, as two accounts at one address might."""
    return tuple(Choice(f"c{i}", Msg(f"reason.{REASONS[i % len(REASONS)]}")) for i in range(n))


def test_render_buttons_lists_and_more() -> None:
    three = render(Outcome((Message((Msg("menu.prompt"),), _choices(3)),), 4, changed=True), "az", None)
    assert [b["interactive"]["type"] for b in three] == ["button"]
    assert three[0]["interactive"]["action"]["buttons"][0]["reply"]["id"] == "4|c0"
    ten = render(Outcome((Message((Msg("menu.prompt"),), _choices(10)),), 4, changed=True), "az", None)
    rows = ten[0]["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and len({r["title"] for r in rows}) == 10  # repeated labels made unique
    twelve = render(Outcome((Message((Msg("menu.prompt"),), _choices(12)),), 4, changed=True), "az", None)
    rows = twelve[0]["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and rows[-1]["id"] == "more|4|9"
    rest = render(Outcome((Message((Msg("menu.prompt"),), _choices(12)),), 4, changed=True), "az", None, 9)
    assert [r["id"] for r in rest[0]["interactive"]["action"]["sections"][0]["rows"]] == [
        "4|c9",
        "4|c10",
        "4|c11",
    ]
    long = Message((Msg("description.current", {"text": "ə" * 1500}),), _choices(2))
    bodies = render(Outcome((long,), 1, changed=True), "az", None)
    assert bodies[0]["type"] == "text" and bodies[-1]["type"] == "interactive"
    assert len(bodies[-1]["interactive"]["body"]["text"]) <= 1024


def test_a_huge_text_is_split_under_the_limit() -> None:
    message = Message((Msg("description.current", {"text": "söz " * 3000}),))
    bodies = render(Outcome((message,), 1, changed=True), "az", None)
    assert len(bodies) >= 3 and all(len(b["text"]["body"]) <= 4096 for b in bodies)


async def test_media_is_read_with_the_token(wa: Wa) -> None:
    data, mime = await wa.channel.client.media("999")
    assert data == IMAGE and mime == "image/png"


async def test_the_pacer_keeps_one_a_second_per_person_after_a_burst() -> None:
    pacer = Pacer(per_second=1000, per_user=10.0, burst=3.0)  # 10 a second, so the test is quick
    started = time.monotonic()
    for _ in range(5):
        await pacer.acquire("994996510079")
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 1.0  # three at once, then two more a tenth of a second apart
    started = time.monotonic()
    await pacer.acquire("994000000000")  # someone else is not held up
    assert time.monotonic() - started < 0.05


async def test_a_staff_photo_reaches_the_whatsapp_subscriber(wa: Wa) -> None:
    from tests.fake_telegram import PHOTO, StaffMember

    user = wa.user("994996510079")
    await file_quickly(wa, user)
    await wa.worker.drain()
    card = next(m for m in wa.fake.sent_to(BAKI) if m["method"] == "sendMessage")
    await StaffMember(wa.fake, 100001, BAKI).photo(
        "AgAD-staff-photo", caption="Bu sayğacdır?", reply_to=card["message_id"]
    )
    await wa.worker.drain()
    [upload] = wa.graph.uploads
    assert upload["data"] == PHOTO and upload["messaging_product"] == "whatsapp"
    image = wa.graph.sent_to(user.key)[-1]
    assert image["type"] == "image" and image["image"]["id"] == "media-up-1"
    assert "Bu sayğacdır?" in image["image"]["caption"]


async def test_a_staff_voice_note_a_document_and_a_long_photo_caption_reach_the_whatsapp_subscriber(
    wa: Wa,
) -> None:
    """Each file is read from Telegram and uploaded under its type and name. A voice note has no caption
    in WhatsApp, and a text longer than a caption goes before its photo: no words are cut."""
    from tests.fake_telegram import StaffMember

    user = wa.user("994996510079")
    await file_quickly(wa, user)
    await wa.worker.drain()
    card = next(m for m in wa.fake.sent_to(BAKI) if m["method"] == "sendMessage")["message_id"]
    rauf = StaffMember(wa.fake, 100001, BAKI)
    await rauf.voice("AwAD-staff-voice", reply_to=card)
    await wa.worker.drain()
    await rauf.document(
        "BQAD-akt", "akt.pdf", "application/pdf", reply_to=card, caption="Aktınız əlavədədir."
    )
    await wa.worker.drain()
    long = "Sayğacın yeri belə olmalıdır. " * 40  # 1,200 characters: more than a caption takes
    await rauf.photo("AgAD-scheme", caption=long.strip(), reply_to=card)
    await wa.worker.drain()

    assert [(u["type"], u["filename"]) for u in wa.graph.uploads] == [
        ("audio/ogg", "voice.ogg"),
        ("application/pdf", "akt.pdf"),
        ("image/jpeg", "photo.jpg"),
    ]
    sent = wa.graph.sent_to(user.key)[-5:]
    assert [m["type"] for m in sent] == ["text", "audio", "document", "text", "image"]
    assert "Bakı Elektrik Şəbəkəsi" in sent[0]["text"]["body"] and sent[1]["audio"] == {"id": "media-up-1"}
    document = sent[2]["document"]
    assert (document["id"], document["filename"]) == ("media-up-2", "akt.pdf")
    assert "Aktınız əlavədədir." in document["caption"]
    assert long.strip() in sent[3]["text"]["body"] and sent[4]["image"] == {"id": "media-up-3"}


def test_voice_notes_and_documents_map_to_files_videos_stay_unsupported() -> None:
    """Regression: an audio message or a document was Unsupported; now the dialog checks its type."""
    value = Value.model_validate({"contacts": [{"wa_id": "994501234567", "profile": {"name": "Aynur"}}]})

    def mapped(**message: Any) -> object:
        raw = {"from": "994501234567", "id": "wamid.1", "timestamp": "1", **message}
        inbound = map_message(value, WaMessage.model_validate(raw))
        assert inbound is not None
        return inbound.event

    audio = {"id": "a1", "mime_type": "audio/ogg; codecs=opus", "voice": True}
    assert mapped(type="audio", audio=audio) == File("voice", "wa:a1", "audio/ogg; codecs=opus")
    document = {"id": "d1", "mime_type": "application/pdf", "filename": "akt.pdf", "caption": "Akt"}
    assert mapped(type="document", document=document) == File(
        "document", "wa:d1", "application/pdf", None, "akt.pdf", "Akt"
    )
    assert mapped(type="video", video={"id": "v1", "mime_type": "video/mp4"}) == Unsupported("video")
    assert mapped(type="sticker", sticker={"id": "s1"}) == Unsupported("sticker")
