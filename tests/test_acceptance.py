"""Acceptance: `isiqbot run` as its own process, set up as an operator sets it up, on SQLite and PostgreSQL.

Everything outside the process stands on 127.0.0.1: the Bot API (`FakeTelegram`), the Graph API
(`FakeGraph`), an HTTP SMS gateway and a real SMTP server. Every channel is configured in every
scenario. Each scenario follows one feature from the subscriber's first message to the last thing
anyone receives; nothing inside the process is replaced or driven by the test.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import update
from sqlmodel import select

from locales import LOCAL_TZ
from storage import outbox
from storage.db import Database
from storage.models import Application, Conversation, Notification, Rating
from tests.assembly import EXAMPLE_DEPARTMENTS
from tests.fake_telegram import PHOTO, StaffMember, TelegramUser
from tests.processes import isiqbot_env, run_isiqbot
from tests.running import (
    BAKI,
    FALLBACK,
    RAUF,
    Isiqbot,
    World,
    choose_account,
    eventually,
    file_in_telegram,
    file_in_whatsapp,
    staff_close,
    t,
    the_application,
    whatsapp_user,
)

TEMPLATE = "isiqbot_status"


# ---- the scenarios ---------------------------------------------------------------------------------


async def test_telegram_subscriber_files_and_staff_carry_it_to_the_result(
    world: World, running: Isiqbot, db: Database
) -> None:
    assert "outbox: email, sms, staff, telegram, whatsapp" in running.log
    elcin = TelegramUser(world.telegram, 501)
    await file_in_telegram(elcin, "+994996510079", "168808605066007", email="elcin@example.az")
    number = (await the_application(db)).number

    # The card reaches the Baku department's group, with its buttons; SMS and e-mail reach Elçin.
    card = await eventually(lambda: world.card(BAKI, number), "the card in the Baku group")
    assert "Yasamal" in card["text"] and "Telegram" in card["text"]
    assert t("staff.btn_take") in world.buttons(BAKI, number)
    assert await eventually(lambda: world.sms.texts_to("+994996510079"), "the registration SMS")
    assert number in world.sms.texts_to("+994996510079")[0]
    assert await eventually(lambda: world.mail.to("elcin@example.az"), "the registration e-mail")

    # Rauf takes it, starts the work and completes it; Elçin hears of each step in the chat.
    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_take")])
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_work")])
    await eventually(
        lambda: any(t("status.in_progress") in x for x in world.telegram_texts(501)), "in progress, in chat"
    )
    await staff_close(world, rauf, number, "Kabel dəyişdirildi, işıq bərpa olundu.")
    news = await eventually(
        lambda: [x for x in world.telegram_texts(501) if t("status.completed") in x], "the result in chat"
    )
    assert "Kabel dəyişdirildi" in news[-1]

    # The result also goes by SMS and by e-mail, as the portal promises.
    result_sms = await eventually(
        lambda: world.sms_saying("+994996510079", t("status.completed")), "result SMS"
    )
    assert number in result_sms[0]
    assert await eventually(lambda: len(world.mail.to("elcin@example.az")) == 2, "the result e-mail")
    assert "Kabel dəyişdirildi" in world.mail.to("elcin@example.az")[1].get_body().get_content()  # type: ignore[union-attr]
    assert (await the_application(db)).status == "completed"


async def test_whatsapp_subscriber_hears_each_status_in_the_window_and_by_template_outside_it(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    service = Isiqbot(tmp_path, world, db_url, WHATSAPP_TEMPLATE=TEMPLATE)
    await asyncio.to_thread(service.import_registry)
    await service.start()
    try:
        sevda = whatsapp_user(world, service, "994996958257")
        await file_in_whatsapp(sevda, "99 695 82 57", "859899677634931")
        number = (await the_application(db)).number
        card = await eventually(lambda: world.card(BAKI, number), "the card in the Baku group")
        assert "WhatsApp" in card["text"]
        assert await eventually(lambda: world.sms.texts_to("+994996958257"), "the registration SMS")

        rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
        await rauf.press(world.buttons(BAKI, number)[t("staff.btn_take")])
        await rauf.press(world.buttons(BAKI, number)[t("staff.btn_work")])
        await eventually(
            lambda: any(t("status.in_progress") in x for x in world.whatsapp_texts(sevda.key)),
            "in progress, as free text inside the 24-hour window",
        )

        # A day later Sevda has not written again: the window is closed, so the template carries it.
        async with db.transaction() as session:
            day_ago = datetime.now(UTC) - timedelta(hours=25)
            await session.execute(
                update(Conversation).where(Conversation.user_key == sevda.key).values(last_inbound_at=day_ago)
            )
        await staff_close(world, rauf, number, "Sayğac yoxlanıldı, qaydasındadır.")
        template = await eventually(
            lambda: [m for m in world.graph.sent_to(sevda.key) if m["type"] == "template"], "the template"
        )
        parameters = [p["text"] for p in template[0]["template"]["components"][0]["parameters"]]
        assert parameters[0] == number and parameters[1] == t("status.completed")
        assert parameters[2].startswith(f"{service.base}/a/")
        assert await eventually(
            lambda: world.sms_saying("+994996958257", t("status.completed")),
            "result SMS",
        )
        assert await service.stop() == 0
    finally:
        service.kill()


async def test_staff_and_subscribers_write_to_each_other_with_photos_and_files_in_both_channels(
    world: World, running: Isiqbot, db: Database
) -> None:
    elcin = TelegramUser(world.telegram, 501)
    await file_in_telegram(elcin, "+994996510079", "168808605066007")
    in_telegram = (await the_application(db)).number
    sevda = whatsapp_user(world, running, "994996958257")
    await file_in_whatsapp(sevda, "99 695 82 57", "859899677634931")
    in_whatsapp = (await the_application(db)).number
    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")

    # Telegram: Rauf answers on the card with a photo; Elçin replies to it with a photo of her own.
    card = await eventually(lambda: world.card(BAKI, in_telegram), "the Telegram application's card")
    await rauf.photo("AgAD-meter", caption="Sayğacınız budur?", reply_to=card["message_id"])
    to_elcin = await eventually(
        lambda: [m for m in world.telegram.sent_to(501) if m["method"] == "sendPhoto"], "the photo for Elçin"
    )
    assert (
        "Sayğacınız budur?" in to_elcin[-1]["caption"] and "Bakı Elektrik Şəbəkəsi" in to_elcin[-1]["caption"]
    )
    # A person replies seconds later; the test could within a millisecond, before the bot has written
    # down which application the photo was about (right after Telegram took it). So it waits for that.
    await eventually(lambda: staff_message_sent(db), "the photo recorded as sent")
    await elcin.photo("AgAD-answer", caption="Bəli, budur.", reply_to=to_elcin[-1]["message_id"])
    back = await eventually(
        lambda: [m for m in world.telegram.sent_to(BAKI) if m["method"] == "sendPhoto"], "Elçin's photo"
    )
    assert back[-1]["photo"] == "AgAD-answer" and "Bəli, budur." in back[-1]["caption"]

    # WhatsApp: Rauf's photo is read from Telegram and uploaded to WhatsApp; Sevda's comes back.
    card = await eventually(lambda: world.card(BAKI, in_whatsapp), "the WhatsApp application's card")
    await rauf.photo("AgAD-cable", caption="Bu kabeldir?", reply_to=card["message_id"])
    image = await eventually(
        lambda: [m for m in world.graph.sent_to(sevda.key) if m["type"] == "image"], "the photo for Sevda"
    )
    assert world.graph.uploads[-1]["data"] == PHOTO and "Bu kabeldir?" in image[-1]["image"]["caption"]
    await eventually(lambda: staff_message_sent(db, 2), "the photo recorded as sent")
    await sevda.image("5550001112223334", caption="Bəli, dirəkdəki kabeldir.", reply_to=image[-1]["id"])
    await eventually(
        lambda: any("Bəli, dirəkdəki kabeldir." in x for x in world.telegram_texts(BAKI)), "Sevda's photo"
    )
    assert world.graph.media_requests[-1] == "5550001112223334"

    # Files: Rauf sends Elçin a voice note in Telegram and Sevda the act, a PDF, in WhatsApp.
    await rauf.voice("AwAD-explain", reply_to=world.card(BAKI, in_telegram)["message_id"])
    voices = await eventually(
        lambda: [m for m in world.telegram.sent_to(501) if m["method"] == "sendVoice"],
        "the voice note for Elçin",
    )
    assert voices[-1]["voice"] == "AwAD-explain" and "Bakı Elektrik Şəbəkəsi" in voices[-1]["caption"]
    await rauf.document(
        "BQAD-akt", "akt.pdf", "application/pdf", reply_to=card["message_id"], caption="İşin aktı."
    )
    documents = await eventually(
        lambda: [m for m in world.graph.sent_to(sevda.key) if m["type"] == "document"], "the act for Sevda"
    )
    assert (
        documents[-1]["document"]["filename"] == "akt.pdf"
        and "İşin aktı." in documents[-1]["document"]["caption"]
    )
    assert world.graph.uploads[-1]["type"] == "application/pdf"


async def staff_message_sent(db: Database, count: int = 1) -> bool:
    """Whether `count` staff messages to subscribers are recorded as sent (their links written)."""
    async with db.transaction() as session:
        rows = (await session.scalars(select(Notification).where(Notification.kind == "staff_message"))).all()
    return sum(row.state in (outbox.SENT, outbox.DELIVERED) for row in rows) >= count


async def test_photos_a_voice_note_and_a_pdf_reach_the_staff_group_and_the_status_page_lists_them(
    world: World, running: Isiqbot, db: Database
) -> None:
    elcin = TelegramUser(world.telegram, 501)
    assert "Azərişıq" in await elcin.text("/start")
    await elcin.press(t("menu.new"))
    await elcin.contact("+994996510079")
    await choose_account(elcin, "168808605066007")
    await elcin.press(t("reason.no_power"))
    await elcin.photo("AgAD-pole", caption="Dirəkdəki kabel qırılıb, səhərdən işıq yoxdur.")
    await elcin.photo("AgAD-box")
    await elcin.voice("AwAD-voice")
    shown = await elcin.document("BQAD-akt", "akt.pdf", "application/pdf")
    assert "📎 Əlavə olunub: 2 şəkil, səs yazısı, sənəd." in shown
    await elcin.press(t("details.continue"))
    await elcin.press(t("contacts.ok"))
    assert "qeydə alındı" in await elcin.press(t("review.send"))
    application = await the_application(db)

    # The card is the first photo, saying what is attached; the rest follow it in its thread.
    card = await eventually(lambda: world.card(BAKI, application.number), "the card in the Baku group")
    assert card["method"] == "sendPhoto" and card["photo"] == "AgAD-pole"
    assert "📎 Əlavələr: 2 şəkil, səs yazısı, sənəd" in card["caption"]

    def after_card() -> list[dict[str, Any]] | None:
        later = [m for m in world.telegram.sent_to(BAKI) if m["message_id"] > card["message_id"]]
        return later[:3] if len(later) >= 3 else None

    media = await eventually(after_card, "the photo, the voice note and the document after the card")
    assert [(m["method"], m.get("photo") or m.get("voice") or m.get("document")) for m in media] == [
        ("sendPhoto", "AgAD-box"),
        ("sendVoice", "AwAD-voice"),
        ("sendDocument", "BQAD-akt"),
    ]

    # The status page names them, and none of their file ids.
    sms = await eventually(lambda: world.sms.texts_to("+994996510079"), "the registration SMS")
    link = re.search(rf"{re.escape(running.base)}(/a/[A-Za-z0-9_-]+)", sms[0])
    assert link is not None, sms
    status, page = await running.get(link.group(1))
    assert status == 200 and "2 şəkil, səs yazısı, sənəd" in page
    assert "AgAD" not in page and "BQAD-akt" not in page


async def test_a_subscriber_who_blocked_the_bot_gets_the_news_by_sms_and_the_link_opens_the_page(
    world: World, running: Isiqbot, db: Database
) -> None:
    elcin = TelegramUser(world.telegram, 501)
    await file_in_telegram(elcin, "+994996510079", "168808605066007")
    number = (await the_application(db)).number
    await eventually(lambda: world.card(BAKI, number), "the card")
    world.telegram.blocked.add(501)  # Elçin blocks the bot

    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_work")])
    news = t("sms.news", number=number, link="")  # "… there is news: {link}"
    fallback = await eventually(lambda: world.sms_saying("+994996510079", news), "the SMS instead")
    link = re.search(rf"{re.escape(running.base)}(/a/[A-Za-z0-9_-]+)", fallback[0])
    assert link is not None, fallback
    status, page = await running.get(link.group(1))
    assert status == 200 and number in page and t("status.in_progress") in page


async def test_a_known_outage_is_told_before_filing_and_its_end_reaches_who_asked(
    world: World, running: Isiqbot, db: Database
) -> None:
    def outages(*args: str) -> str:
        result = run_isiqbot(running.tmp_path, "outages", *args, env=running.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    back = (datetime.now(UTC) + timedelta(hours=3)).astimezone(LOCAL_TZ)
    declared = await asyncio.to_thread(
        outages, "add", "--region", "Yasamal", "--until", back.strftime("%Y-%m-%d %H:%M"), "--actor", "Rauf"
    )
    assert declared.startswith("outage 1 declared: region Yasamal")

    elcin = TelegramUser(world.telegram, 503)  # Yasamal
    await elcin.text("/start")
    await elcin.press(t("menu.new"))
    await elcin.contact("+994996510079")
    told = await elcin.press(t("reason.no_power"))
    assert t("outage.known", until=back.replace(second=0, microsecond=0)) in told
    assert t("outage.watching") in await elcin.press(t("outage.watch"))
    assert "1 waiting" in await asyncio.to_thread(outages, "list")

    closed = await asyncio.to_thread(outages, "close", "1")
    assert closed.strip() == "outage 1 closed; 1 chat(s) will be told that power is back"
    await eventually(lambda: t("outage.over") in world.telegram_texts(503), "the news that power is back")

    async def recorded() -> list[tuple[str, str]]:  # the worker records the send just after it
        async with db.transaction() as session:
            query = select(Notification).where(Notification.kind == "outage_over")
            news = [(n.user_key, n.state) for n in (await session.scalars(query)).all()]
        return news if news == [("503", "sent")] else []

    await eventually(recorded, "the news recorded as sent, once")
    async with db.transaction() as session:  # nothing was filed, nothing reached staff
        assert (await session.scalars(select(Application))).all() == []
    assert not [text for text in world.telegram_texts(BAKI) if "Yasamal" in text]
    assert world.telegram_texts(503).count(t("outage.over")) == 1


async def test_a_broadcast_reaches_every_open_application_of_the_region_in_both_channels_once(
    world: World, running: Isiqbot, db: Database
) -> None:
    def broadcast(*args: str) -> str:
        result = run_isiqbot(running.tmp_path, "broadcast", *args, env=running.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    elcin = TelegramUser(world.telegram, 504)  # Yasamal, in Telegram
    await file_in_telegram(elcin, "+994996510079", "168808605066007")
    sevda = whatsapp_user(world, running, "994996958257")  # Yasamal, in WhatsApp
    await file_in_whatsapp(sevda, "99 695 82 57", "859899677634931")
    nesimi = TelegramUser(world.telegram, 505)  # Nəsimi: not concerned
    await file_in_telegram(nesimi, "+994107390635", "590869685200678")

    words = "Yasamalda qəza bərpa işləri gedir; işığın 18:00-da verilməsi gözlənilir."
    said = await asyncio.to_thread(
        broadcast, "send", "--region", "Yasamal", "--text", words, "--actor", "Rauf"
    )
    assert said.strip() == "broadcast 1: 2 chat(s) in region Yasamal will be told (az 2)"
    news = t("broadcast.news", text=words)
    await eventually(lambda: news in world.telegram_texts(504), "the broadcast in Telegram")
    await eventually(lambda: news in world.whatsapp_texts(sevda.key), "the broadcast in WhatsApp")

    async def all_sent() -> str:  # the worker records each send just after it
        listed = await asyncio.to_thread(broadcast, "list")
        return listed if "\tsent 2\t" in listed else ""

    assert (await eventually(all_sent, "both copies recorded as sent")).startswith("1\t")
    assert world.telegram_texts(504).count(news) == 1 and world.whatsapp_texts(sevda.key).count(news) == 1
    assert not [text for text in world.telegram_texts(505) if words in text]


async def filed_in_telegram(world: World, db: Database, user_id: int) -> tuple[TelegramUser, str]:
    """Elçin files in Telegram from chat `user_id`; the card reaches the Baku group. Who, and the number."""
    elcin = TelegramUser(world.telegram, user_id)
    await file_in_telegram(elcin, "+994996510079", "168808605066007")
    number = (await the_application(db)).number
    await eventually(lambda: world.card(BAKI, number), "the card in the Baku group")
    return elcin, number


async def offered(world: World, marker: str) -> dict[str, str]:
    """The buttons of the bot's latest question of choices in the Baku group (`:to:` departments,
    `:r:` canned replies): label → callback data."""
    asked = await eventually(
        lambda: [m for m in world.telegram.sent_to(BAKI) if marker in str(m.get("reply_markup"))],
        "the choices",
    )
    return {
        b["text"]: b["callback_data"] for row in asked[-1]["reply_markup"]["inline_keyboard"] for b in row
    }


async def test_staff_move_an_application_to_another_department_and_everyone_hears_where_it_went(
    world: World, running: Isiqbot, db: Database
) -> None:
    gence, ganja = -1001000000002, "Gəncə Regional Elektrik Şəbəkəsi"
    _, number = await filed_in_telegram(world, db, 506)
    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_move")])
    await rauf.press((await offered(world, ":to:"))[ganja])

    card = await eventually(lambda: world.card(gence, number), "the card in the Gəncə group")
    assert t("staff.btn_take") in str(card["reply_markup"])
    told = t("notify.transferred", number=number, department=ganja)
    await eventually(lambda: any(told in text for text in world.telegram_texts(506)), "the news in Telegram")
    closed = await eventually(
        lambda: [e for e in world.telegram.edits if int(e["chat_id"]) == BAKI and "↪️" in str(e.get("text"))],
        "the Baku card closed",
    )
    assert closed[-1]["reply_markup"]["inline_keyboard"] == []
    assert (await the_application(db)).department == "gence"
    assert sum(told in text for text in world.telegram_texts(506)) == 1


async def test_a_canned_reply_picked_in_the_staff_chat_reaches_the_subscriber(
    world: World, running: Isiqbot, db: Database
) -> None:
    _, number = await filed_in_telegram(world, db, 507)
    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_canned")])
    await rauf.press((await offered(world, ":r:"))["Briqada yoldadır"])

    crew = "Briqada ünvanınıza yola düşüb"
    said = await eventually(
        lambda: [x for x in world.telegram_texts(507) if crew in x], "the reply in Telegram"
    )
    assert number in said[0] and "Bakı Elektrik Şəbəkəsi" in said[0] and "{number}" not in said[0]
    note = t("staff.note_canned", name="Rauf", title="Briqada yoldadır")
    await eventually(lambda: note in world.telegram_texts(BAKI), "the note in the thread")
    assert len(said) == 1


async def completed_in_telegram(
    world: World, db: Database
) -> tuple[TelegramUser, StaffMember, str, list[str]]:
    """Elçin files in Telegram and Rauf completes it from the Baku group: who, the number, the result news."""
    elcin = TelegramUser(world.telegram, 501)
    await file_in_telegram(elcin, "+994996510079", "168808605066007")
    number = (await the_application(db)).number
    await eventually(lambda: world.card(BAKI, number), "the card in the Baku group")
    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_work")])
    await staff_close(world, rauf, number, "Sayğac dəyişdirildi.")
    news = await eventually(
        lambda: [x for x in world.telegram_texts(501) if "Sayğac dəyişdirildi" in x], "the result in chat"
    )
    return elcin, rauf, number, news


async def test_a_low_rating_after_the_result_reaches_the_staff_thread_once(
    world: World, running: Isiqbot, db: Database
) -> None:
    elcin, rauf, number, news = await completed_in_telegram(world, db)
    assert t("notify.rate_hint") in news[-1]  # the result asks for a rating

    await elcin.text("/my")
    await elcin.press(t("my.open", number=number))
    await elcin.press(t("rating.rate"))
    await elcin.press(t("rating.stars_1"))
    thanks = await elcin.text("Usta <b>iki gün</b> gec gəldi.")
    assert t("rating.thanks_low", number=number) in thanks
    assert t("rating.rate") not in [label for label, _ in elcin.buttons()]

    said = t(
        "staff.note_rating_low_comment", number=number, stars=1, comment="Usta <b>iki gün</b> gec gəldi."
    )
    await eventually(lambda: said in world.telegram_texts(BAKI), "the low rating in the staff thread")
    card = world.card(BAKI, number)
    [note] = [m for m in world.telegram.sent_to(BAKI) if m.get("text") == said]
    assert note["reply_parameters"]["message_id"] == card["message_id"]  # in the card's thread
    async with db.transaction() as session:
        assert [(r.stars, r.comment) for r in (await session.scalars(select(Rating))).all()] == [
            (1, "Usta <b>iki gün</b> gec gəldi.")
        ]
    await rauf.text("/stats")
    stats = await eventually(
        lambda: [x for x in world.telegram_texts(BAKI) if "⭐" in x], "the /stats answer"
    )
    assert "orta bal 1,0 (1 qiymət)" in stats[-1] and "100%" in stats[-1]


async def test_a_reopened_application_is_back_in_the_staff_group_with_the_reason(
    world: World, running: Isiqbot, db: Database
) -> None:
    elcin, rauf, number, news = await completed_in_telegram(world, db)
    assert t("notify.reopen_hint", days="7") in news[-1]  # REOPEN_DAYS, 7 unless set
    await eventually(lambda: t("staff.btn_take") not in world.buttons(BAKI, number), "the card closed")

    await elcin.text("/my")
    shown = await elcin.press(t("my.open", number=number))
    assert t("reopen.button") in [label for label, _ in elcin.buttons()], shown
    await elcin.press(t("reopen.button"))
    reason = "İşıq yenə söndü, <kabel> yenidən qızır."
    done = await elcin.text(reason)
    assert t("reopen.done", number=number) in done and t("status.reopened") in done

    said = t("staff.note_reopened", number=number, reason=reason)
    await eventually(lambda: said in world.telegram_texts(BAKI), "the reopening in the staff thread")
    card = world.card(BAKI, number)
    [note] = [m for m in world.telegram.sent_to(BAKI) if m.get("text") == said]
    assert note["reply_parameters"]["message_id"] == card["message_id"]  # in the card's thread
    buttons = await eventually(
        lambda: (b := world.buttons(BAKI, number)) and t("staff.btn_take") in b and b, "the card open again"
    )
    assert t("staff.btn_work") in buttons and t("staff.btn_done") not in buttons
    edits = [e for e in world.telegram.edits if int(e["message_id"]) == card["message_id"]]
    assert t("status.reopened") in str(edits[-1].get("text"))
    await rauf.press(buttons[t("staff.btn_work")])  # back at work on it
    await eventually(
        lambda: [x for x in world.telegram_texts(501) if t("status.in_progress") in x][1:],
        "in progress again",
    )
    async with db.transaction() as session:
        application = (await session.scalars(select(Application))).one()
    assert application.status == "in_progress"


async def test_staff_propose_visit_times_and_the_subscriber_picks_one_in_telegram(
    world: World, running: Isiqbot, db: Database
) -> None:
    # The reminder the evening before needs the process's clock moved: tests/test_visits.py and
    # tests/test_visit_staff_chat.py run it with a test clock.
    elcin = TelegramUser(world.telegram, 508)
    await file_in_telegram(elcin, "+994996510079", "168808605066007")
    number = (await the_application(db)).number
    await eventually(lambda: world.card(BAKI, number), "the card in the Baku group")

    day = datetime.now(LOCAL_TZ).date() + timedelta(days=2)
    first, second = f"{day:%d.%m} 10:00–12:00", f"{day:%d.%m} 14:00–16:00"
    rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
    await rauf.press(world.buttons(BAKI, number)[t("staff.btn_visit")])
    prompt = await eventually(
        lambda: [m for m in world.telegram.sent_to(BAKI) if "force_reply" in str(m.get("reply_markup"))],
        "the visit prompt",
    )
    await rauf.text(f"{day:%d.%m} 10:00-12:00; {day:%d.%m} 14-16", reply_to=prompt[-1]["message_id"])
    news = await eventually(
        lambda: [x for x in world.telegram_texts(508) if f"• {second}" in x], "the times in Telegram"
    )
    assert number in news[0] and f"• {first}" in news[0]

    await elcin.text("/my")
    await elcin.press(t("my.open", number=number))
    assert t("visit.window", window=second) in [label for label, _ in elcin.buttons()]
    done = await elcin.press(t("visit.window", window=second))
    assert t("visit.confirmed", number=number, window=second) in done

    said = t("staff.note_visit_chosen", number=number, window=second)
    await eventually(lambda: said in world.telegram_texts(BAKI), "the pick in the staff thread")
    card = world.card(BAKI, number)
    await eventually(
        lambda: [
            e
            for e in world.telegram.edits
            if int(e["message_id"]) == card["message_id"]
            and t("staff.card_visit", window=second) in str(e.get("text"))
        ],
        "the visit on the card",
    )


async def test_an_application_from_a_region_no_department_serves_lands_in_the_default_staff_chat(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    only_baku = EXAMPLE_DEPARTMENTS.split("[departments.gence]")[0]
    (tmp_path / "departments.toml").write_text(only_baku, encoding="utf-8")
    service = Isiqbot(tmp_path, world, db_url)
    await asyncio.to_thread(service.import_registry)
    await service.start()
    try:
        nigar = TelegramUser(world.telegram, 502)
        await file_in_telegram(nigar, "+994509877853", "796037680826200")  # Gəncə
        number = (await the_application(db)).number
        card = await eventually(lambda: world.card(FALLBACK, number), "the card in STAFF_CHAT_ID")
        assert "Gəncə" in card["text"]
        assert not world.card(BAKI, number)
        assert await service.stop() == 0
    finally:
        service.kill()


async def test_a_deadline_reminder_is_posted_once_in_the_thread(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    # Nobody takes the application within 1.8 seconds; the deadlines are looked at every second.
    service = Isiqbot(tmp_path, world, db_url, SLA_TAKE_HOURS="0.0005", DEADLINE_CHECK_SECONDS="1")
    await asyncio.to_thread(service.import_registry)
    await service.start()
    try:
        elcin = TelegramUser(world.telegram, 501)
        await file_in_telegram(elcin, "+994996510079", "168808605066007")
        number = (await the_application(db)).number
        card = await eventually(lambda: world.card(BAKI, number), "the card")
        reminders = await eventually(
            lambda: world.reminders(BAKI),
            "reminder",
        )
        assert number in reminders[0]["text"]
        assert reminders[0]["reply_parameters"]["message_id"] == card["message_id"]  # in the card's thread
        await asyncio.sleep(3)  # three more looks at the deadlines
        assert len(world.reminders(BAKI)) == 1
        assert await service.stop() == 0
    finally:
        service.kill()


# ---- stopping and readiness ------------------------------------------------------------------------


async def test_sigterm_mid_fan_out_finishes_the_claimed_sends_and_a_restart_sends_nothing_twice(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    phones = [f"+99450{n:07d}" for n in range(1000001, 1000021)]
    async with db.transaction() as session:  # twenty SMS owed, to twenty people
        for phone in phones:
            outbox.enqueue(
                session,
                channel=outbox.SMS,
                user_key=phone,
                kind="sms_code",
                payload={"key": "sms.otp", "params": {"code": "123456", "minutes": 5}},
                now=datetime.now(UTC),
            )
    world.sms.delay = 1.5  # a slow gateway: every send is in flight when SIGTERM comes
    service = Isiqbot(tmp_path, world, db_url)
    await service.start()
    try:
        await eventually(lambda: world.sms.received, "the first SMS in flight")
        assert await service.stop() == 0
        async with db.transaction() as session:
            states = [n.state for n in (await session.scalars(select(Notification))).all()]
        assert outbox.SENDING not in states  # each claimed send finished and was recorded
        sent_before = len(world.sms.received)

        world.sms.delay = 0
        restarted = Isiqbot(tmp_path, world, db_url)
        await restarted.start()
        try:
            await eventually(lambda: len(world.sms.received) >= len(phones), "every SMS", within=30)
            await asyncio.sleep(1)
            assert await restarted.stop() == 0
        finally:
            restarted.kill()
    finally:
        service.kill()
    assert sorted(m["to"] for m in world.sms.received) == phones  # each once, none twice
    assert sent_before > 0


async def test_readyz_says_when_the_outbox_is_stuck(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    service = Isiqbot(tmp_path, world, db_url, READYZ_OUTBOX_MAX_AGE="60")
    await service.start()
    try:
        status, body = await service.get("/readyz")
        assert status == 200 and '"telegram"' in body and '"whatsapp"' in body
        async with db.transaction() as session:  # a message for a channel nobody sends, due an hour ago
            outbox.enqueue(
                session,
                channel="viber",
                user_key="42",
                kind="status",
                payload={},
                now=datetime.now(UTC) - timedelta(hours=1),
            )
        status, body = await service.get("/readyz")
        assert status == 503 and "outbox" in body
        status, _ = await service.get("/healthz")
        assert status == 200  # the database answers: alive, but not doing its job
        assert await service.stop() == 0
    finally:
        service.kill()
    restarted = Isiqbot(tmp_path, world, db_url)
    await restarted.start(probe="/healthz")  # it is not ready: the message for viber still waits
    try:
        assert "1 message(s) wait for viber, which is not configured" in restarted.log
        assert await restarted.stop() == 0
    finally:
        restarted.kill()


async def test_by_webhook_the_subscriber_is_answered_and_readyz_sees_a_lost_registration(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    webhook = "https://bot.example.az/telegram/webhook"
    service = Isiqbot(tmp_path, world, db_url, TELEGRAM_WEBHOOK_URL=webhook, TELEGRAM_WEBHOOK_SECRET="s3cret")
    await service.start(probe="/healthz")  # /readyz asks Telegram once a minute: not before the test does
    try:
        assert world.telegram.webhook_url == webhook
        update = TelegramUser(world.telegram, 503)._message(text="/start") | {"update_id": 77}
        headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{service.base}/telegram/webhook", json=update, headers=headers) as r:
                assert r.status == 200
        assert any("Azərişıq" in x for x in world.telegram_texts(503))

        world.telegram.webhook_url = ""  # someone removed the webhook: Telegram no longer calls us
        status, body = await service.get("/readyz")
        assert status == 503 and "webhook" in body
        assert await service.stop() == 0
    finally:
        service.kill()


async def test_an_answer_telegram_does_not_take_in_time_leaves_later_through_the_outbox_in_order(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    service = Isiqbot(
        tmp_path, world, db_url, TELEGRAM_WEBHOOK_URL="https://bot.example.az/tg", TELEGRAM_WEBHOOK_SECRET="s"
    )
    await service.start()
    try:
        user = TelegramUser(world.telegram, 505)
        headers = {"X-Telegram-Bot-Api-Secret-Token": "s"}
        world.telegram.down_until = time.monotonic() + 4  # the Bot API answers 502 for 4 seconds
        async with aiohttp.ClientSession() as http:
            for update_id, text in ((801, "/start"), (802, "/help")):
                update = user._message(text=text) | {"update_id": update_id}
                started = time.monotonic()
                async with http.post(f"{service.base}/telegram/webhook", json=update, headers=headers) as r:
                    assert r.status == 200
                assert time.monotonic() - started < 6  # not held while Telegram is down (3 s at most)
        help_line = t("help.text").splitlines()[0]
        menu = t("menu.prompt")  # how /help's answer ends

        def both() -> list[str]:
            texts = world.telegram_texts(505)
            return texts if any(help_line in x for x in texts) and texts[-1].endswith(menu) else []

        texts = await eventually(both, "both answers", within=40)
        assert "Azərişıq" in texts[0]  # /start's answer first, then /help's: in the order asked
        assert [i for i, x in enumerate(texts) if help_line in x] == [len(texts) - 1]
        assert await service.stop() == 0
    finally:
        service.kill()
    async with db.transaction() as session:
        replies = (await session.scalars(select(Notification).where(Notification.kind == "reply"))).all()
    assert replies and all(r.state == "sent" for r in replies)  # each sent once, recorded
    assert len(world.telegram_texts(505)) == len(texts)


async def test_a_revoked_token_stops_polling_and_with_it_the_process(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    service = Isiqbot(tmp_path, world, db_url)
    await service.start()
    try:
        revoked = {"ok": False, "error_code": 401, "description": "Unauthorized"}
        world.telegram.fail_next("getupdates", 401, revoked)  # the token was revoked in BotFather
        assert service.process is not None
        code = await asyncio.to_thread(service.process.wait, 60)
        assert code == 1  # not a process that looks alive and polls nothing: a service manager restarts it
        assert "telegram polling stopped unexpectedly" in service.log
    finally:
        service.kill()


def test_python_dash_m_isiqbot_is_the_isiqbot_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "isiqbot", "migrate"],
        cwd=tmp_path,
        env=isiqbot_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "up to date" in result.stdout, result.stderr
