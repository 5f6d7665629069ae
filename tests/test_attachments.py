"""More attachments (#16, item 8): up to five photos, a voice note and a document with an application.

The description screen keeps each one and says what is attached; the review card lists them; the
application keeps them (and its first photo as `photo_ref`, as before); the staff group gets the card
saying so and the files after it, an album for the photos. Bad files are refused in words, and change
nothing. The conversation runs on a real database, in the three languages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update
from sqlmodel import select

from bot.channels.telegram import CHANNEL
from bot.core.service import Conversations
from dialogs.events import File, Unsupported
from dialogs.state import Step
from locales import Msg, translate
from storage.db import Database
from storage.models import Application, Conversation, Notification, StaffAction
from tests.chat import PLAIN, Chat, choose_account, identify
from tests.conftest import Clock
from tests.fake_telegram import FakeTelegram, StaffMember, TelegramUser
from tests.test_staff_chat import BAKI, SUBSCRIBER, Desk, make_desk

PDF = File("document", "doc-1", "application/pdf", 52_000, "akt.pdf")
VOICE = File("voice", "voice-1", "audio/ogg", 9_000)


async def at_description(chat: Chat, lang: str = "az") -> None:
    await chat.start(hint=lang)
    await identify(chat, PLAIN)
    await choose_account(chat)
    await chat.press("reason:damaged_cable")
    if "dup:new" in chat.choice_ids:  # one is open on this account already: this is another problem
        await chat.press("dup:new")
    assert await chat.step() == Step.DESCRIPTION


def said(lang: str, key: str, **params: object) -> str:
    return translate(Msg(key, params), lang)


def listed(lang: str, photos: int, voice: bool = True, document: bool = True) -> str:
    parts = [said(lang, "attachments.kind_photo" if photos == 1 else "attachments.kind_photos", count=photos)]
    parts += [said(lang, "attachments.kind_voice")] if voice else []
    parts += [said(lang, "attachments.kind_document")] if document else []
    return ", ".join(parts)


async def stored_attachments(chat: Chat) -> list[dict[str, object]]:
    return list((await chat.state()).draft.get("attachments") or [])


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_five_photos_a_voice_note_and_a_pdf_are_kept_listed_and_registered(
    service: Conversations, lang: str
) -> None:
    chat = Chat(service)
    await at_description(chat, lang)
    for n in range(1, 6):
        assert said(lang, "attachments.photo_added", count=n, max=5) in await chat.photo(f"photo-{n}")
    sixth = await chat.photo("photo-6")
    assert said(lang, "attachments.photos_full", max=5) in sixth
    assert said(lang, "attachments.voice_saved") in await chat.send(VOICE)
    shown = await chat.send(PDF)
    assert said(lang, "attachments.document_saved") in shown
    assert said(lang, "attachments.have", list=listed(lang, 5)) in shown
    assert said(lang, "attachments.remove") in shown
    assert said(lang, "attachments.voice_replaced") in await chat.send(
        File("voice", "voice-2", "audio/ogg", 80)
    )

    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb.")
    await chat.press("done")
    review = await chat.press("ok")
    assert said(lang, "review.attachments", list=listed(lang, 5)) in review
    await chat.press("send")
    async with service.db.transaction() as session:
        application = (await session.scalars(select(Application))).one()
    assert application.photo_ref == "photo-1"  # the first photo, where code before this one looks
    assert application.attachments is not None
    assert [(a["kind"], a["ref"]) for a in application.attachments] == [
        *(("photo", f"photo-{n}") for n in range(1, 6)),
        ("document", "doc-1"),
        ("voice", "voice-2"),
    ]
    document = next(a for a in application.attachments if a["kind"] == "document")
    assert document == {
        "kind": "document",
        "ref": "doc-1",
        "mime": "application/pdf",
        "size": 52_000,
        "name": "akt.pdf",
    }


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_bad_files_are_refused_in_words_and_change_nothing(service: Conversations, lang: str) -> None:
    chat = Chat(service)
    await at_description(chat, lang)
    await chat.photo("photo-1")
    before = await stored_attachments(chat)
    refusals = {
        File("document", "exe", "application/x-msdownload", 1000, "setup.exe"): "attachments.document_type",
        File("document", "zip", "application/zip", 1000, "evidence.zip"): "attachments.document_type",
        File("document", "big", "application/pdf", 11 * 1024 * 1024, "big.pdf"): "attachments.too_big",
        File("document", "empty", "application/pdf", 0, "empty.pdf"): "attachments.empty",
        File("voice", "mp4", "video/mp4", 1000): "attachments.voice_type",
        Unsupported("video"): "attachments.video",
        Unsupported("video_note"): "attachments.video",
        Unsupported("sticker"): "error.unsupported",
    }
    for event, key in refusals.items():
        params = {"max": 10} if key == "attachments.too_big" else {}
        assert said(lang, key, **params) in await chat.send(event), event
        assert await chat.step() == Step.DESCRIPTION
        assert await stored_attachments(chat) == before
    # A document sent as a file without a type is judged by its name.
    assert said(lang, "attachments.document_saved") in await chat.send(
        File("document", "jpg", "", 500, "sayğac.JPG")
    )
    assert (await stored_attachments(chat))[-1]["mime"] == "image/jpeg"


async def test_remove_clears_every_attachment_and_the_location(service: Conversations) -> None:
    chat = Chat(service)
    await at_description(chat)
    await chat.photo("photo-1")
    await chat.send(VOICE)
    await chat.location(40.39, 49.85)
    assert "Əlavələri və məkanı sil" in await chat.send(PDF)
    assert "Əlavələr və məkan silindi." in await chat.press("remove")
    draft = (await chat.state()).draft
    assert draft["attachments"] == [] and draft["location"] is None
    assert "remove" not in chat.choice_ids


async def test_a_draft_saved_with_one_photo_goes_on_with_it(service: Conversations) -> None:
    """Regression: drafts stored before there were several hold `photo`; they load and keep it."""
    chat = Chat(service)
    await at_description(chat)
    async with service.db.transaction() as session:
        row = (await session.scalars(select(Conversation))).one()
        old = row.state.replace('"draft": {', '"draft": {"photo": "old-photo", ', 1)
        assert old != row.state
        await session.execute(update(Conversation).where(Conversation.id == row.id).values(state=old))
    shown = await chat.photo("new-photo")
    assert "Şəkil qəbul olundu (2/5)." in shown and "📎 Əlavə olunub: 2 şəkil." in shown
    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb.")
    await chat.press("done")
    assert "Əlavələr: 2 şəkil" in await chat.press("ok")
    await chat.press("send")
    async with service.db.transaction() as session:
        application = (await session.scalars(select(Application))).one()
    assert application.photo_ref == "old-photo" and application.attachments is not None
    assert [a["ref"] for a in application.attachments] == ["old-photo", "new-photo"]


# ---- the staff group -------------------------------------------------------------------------------


@pytest.fixture
async def desk(fake: FakeTelegram, sample_db: Database, clock: Clock) -> AsyncIterator[Desk]:
    async for made in make_desk(fake, sample_db, clock):
        yield made


async def test_the_card_says_what_is_attached_and_the_files_follow_it_as_one_album(desk: Desk) -> None:
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await at_description(chat)
    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb.")
    for n in range(1, 4):
        await chat.photo(f"AgAD-{n}")
    await chat.send(File("voice", "AwAD-voice", "audio/ogg", 9_000))
    await chat.send(File("document", "BQAD-doc", "application/pdf", 52_000, "akt.pdf"))
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    await desk.worker.drain()
    sent = desk.fake.sent_to(BAKI)
    assert [m["method"] for m in sent] == ["sendPhoto", "sendMediaGroup", "sendVoice", "sendDocument"]
    card = sent[0]
    assert card["photo"] == "AgAD-1" and "📎 Əlavələr: 3 şəkil, səs yazısı, sənəd" in card["caption"]
    album = sent[1]["media"]
    assert [item["media"] for item in album] == ["AgAD-2", "AgAD-3"]  # one group message for both
    assert sent[2]["voice"] == "AwAD-voice" and sent[3]["document"] == "BQAD-doc"
    assert all(m["reply_parameters"]["message_id"] == card["message_id"] for m in sent[1:])


async def test_a_voice_note_and_a_document_sent_in_the_thread_reach_the_staff(desk: Desk) -> None:
    application = await desk.file()
    subscriber = TelegramUser(desk.fake, SUBSCRIBER)
    await subscriber.text("/my")
    await subscriber.press(application.number)
    assert "şöbəyə göndərildi" in await subscriber.voice("AwAD-later")
    assert "şöbəyə göndərildi" in await subscriber.document("BQAD-later", "qəbz.pdf", "application/pdf")
    refused = await subscriber.document("BQAD-exe", "setup.exe", "application/x-msdownload")
    assert translate(Msg("attachments.document_type"), "az") in refused
    await desk.worker.drain()
    sent = desk.fake.sent_to(BAKI)
    assert [m["method"] for m in sent[-4:]] == ["sendMessage", "sendVoice", "sendMessage", "sendDocument"]
    assert sent[-3]["voice"] == "AwAD-later" and sent[-1]["document"] == "BQAD-later"
    async with desk.db.transaction() as session:
        relays = (await session.scalars(select(Notification).where(Notification.kind == "relay"))).all()
    assert len(relays) == 2  # the refused one went nowhere


async def test_staff_send_the_subscriber_a_voice_note_and_a_document_and_bad_files_are_refused(
    desk: Desk,
) -> None:
    application = await desk.file()
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    card = desk.card()["message_id"]
    await rauf.voice("AwAD-staff", reply_to=card)
    await rauf.document("BQAD-akt", "akt.pdf", "application/pdf", reply_to=card, caption="İşin aktı budur.")
    await desk.worker.drain()
    voice, document = desk.fake.sent_to(SUBSCRIBER)[-2:]
    assert (voice["method"], voice["voice"]) == ("sendVoice", "AwAD-staff")
    assert "Bakı Elektrik Şəbəkəsi" in voice["caption"] and application.number in voice["caption"]
    assert (document["method"], document["document"]) == ("sendDocument", "BQAD-akt")
    assert "İşin aktı budur." in document["caption"] and "Rauf" not in document["caption"]

    # The subscriber's reply to the document reaches the thread, as a reply to any staff message does.
    subscriber = TelegramUser(desk.fake, SUBSCRIBER)
    assert "şöbəyə göndərildi" in await subscriber.text(
        "Aldım, təşəkkür edirəm.", reply_to=document["message_id"]
    )

    sent_before = len(desk.fake.sent_to(SUBSCRIBER))
    await rauf.document("BQAD-exe", "setup.exe", "application/x-msdownload", reply_to=card)
    await rauf.document("BQAD-big", "plan.pdf", "application/pdf", reply_to=card, size=30 * 1024 * 1024)
    await rauf.document("BQAD-empty", "bos.pdf", "application/pdf", reply_to=card, size=0)
    await rauf.audio("CQAD-song", "mahni.mp3", reply_to=card)  # a music file: Telegram's "audio"
    await rauf.sticker(reply_to=card)
    answers = [m["text"] for m in desk.fake.sent_to(BAKI)[-5:]]
    assert answers == [
        said("az", "attachments.document_type"),
        said("az", "attachments.too_big", max=10),
        said("az", "attachments.empty"),
        said("az", "attachments.document_type"),
        said("az", "staff.relay_unsupported"),
    ]
    await desk.worker.drain()
    assert len(desk.fake.sent_to(SUBSCRIBER)) == sent_before  # nothing of the refused ones
    async with desk.db.transaction() as session:
        audit = (await session.scalars(select(StaffAction).where(StaffAction.action == "message"))).all()
        queued = (
            await session.scalars(select(Notification).where(Notification.kind == "staff_message"))
        ).all()
    assert [a.detail for a in audit] == ["0 characters and a voice note", "16 characters and a document"]
    assert [n.payload["file"]["kind"] for n in queued] == ["voice", "document"]  # nothing for the refused


async def test_a_card_too_long_for_a_caption_is_followed_by_all_its_photos_in_one_album(desk: Desk) -> None:
    chat = Chat(desk.service, user=str(SUBSCRIBER), channel=CHANNEL)
    await at_description(chat)
    await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb. " * 24)  # too long for a caption
    await chat.photo("AgAD-1")
    await chat.photo("AgAD-2")
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    await desk.worker.drain()
    sent = desk.fake.sent_to(BAKI)
    assert [m["method"] for m in sent] == ["sendMessage", "sendMediaGroup"]
    assert [item["media"] for item in sent[1]["media"]] == ["AgAD-1", "AgAD-2"]


async def test_a_whatsapp_subscribers_document_is_fetched_and_uploaded_and_an_oversized_one_is_not(
    desk: Desk,
) -> None:
    fetched: list[str] = []
    sizes = {"wa:doc-ok": 2048, "wa:doc-huge": 11 * 1024 * 1024}

    async def media(ref: str) -> tuple[bytes, str]:  # WhatsApp's media store, as `Channels.media` reads it
        fetched.append(ref)
        return b"%PDF-1.4" + b"\0" * sizes[ref], "application/pdf"

    desk.chat.media = media
    for n, ref in enumerate(sizes):
        chat = Chat(desk.service, user=f"99450000000{n}", channel="whatsapp")
        await at_description(chat)
        await chat.send(File("document", ref, "application/pdf", None, "akt.pdf"))  # WhatsApp tells no size
        await chat.type("Dirəkdən gələn kabel qopub, yerdə qalıb.")
        await chat.press("done")
        await chat.press("ok")
        await chat.press("send")
    await desk.worker.drain()
    assert sorted(fetched) == ["wa:doc-huge", "wa:doc-ok"]  # two applications: their threads go side by side
    documents = [m for m in desk.fake.sent_to(BAKI) if m["method"] == "sendDocument"]
    assert len(documents) == 1  # the oversized one is not uploaded: a line names it instead
    kind = Msg("attachments.kind_document")
    named = translate(Msg("staff.attachment_too_big", {"kind": kind, "max": 10}), "az")
    assert any(m.get("text") == named for m in desk.fake.sent_to(BAKI))
    async with desk.db.transaction() as session:
        kinds = (
            await session.scalars(select(Notification.state).where(Notification.kind == "document"))
        ).all()
    assert kinds == ["sent", "sent"]
