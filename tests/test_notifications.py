"""SMS and e-mail through the outbox: a local HTTP SMS gateway, a real SMTP server (aiosmtpd), fallback."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select

from bot.app import build
from bot.channels.telegram import CHANNEL
from bot.core.links import LinkSigner, PublicLinks
from bot.core.service import Conversations
from bot.notify.outbox import OutboxWorker
from bot.notify.sms import delivery_handler, sms_parts
from bot.staff.desk import StaffDesk
from bot.web.server import make_app
from dialogs.lifecycle import Status
from locales import LANGUAGES, Msg, translate
from storage import outbox
from storage.db import Database
from storage.models import Notification
from tests.assembly import FAST, settings_in
from tests.chat import PLAIN, Chat, SmsRecorder, choose_account, identify
from tests.conftest import Clock
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.outside import Gateway, Mailbox
from tests.processes import free_port

BASE_URL = "https://bot.azerisiq.az"
SECRET = b"notifications-test-secret-0123456789"
SMS_TOKEN = "gateway-token-xyz"
SUBSCRIBER = 501


@dataclass
class Post:
    service: Conversations
    worker: OutboxWorker
    clock: Clock
    gateway: Gateway
    mailbox: Mailbox
    links: PublicLinks
    fake: FakeTelegram

    async def rows(self, channel: str | None = None) -> list[Notification]:
        async with self.service.db.transaction() as session:
            query = select(Notification).order_by(Notification.id)
            if channel is not None:
                query = query.where(Notification.channel == channel)
            return list((await session.scalars(query)).all())

    async def file(self, email_address: str | None = "elcin@example.az", lang: str = "az") -> Chat:
        chat = Chat(self.service, user=str(SUBSCRIBER), channel=CHANNEL)
        if lang != "az":
            await chat.start(hint=lang)
        await identify(chat, PLAIN)
        await choose_account(chat)
        await chat.press("reason:no_power")
        await chat.type("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
        await chat.press("done")
        if email_address:
            await chat.press("email")
            await chat.type(email_address)
        await chat.press("ok")
        await chat.press("send")
        return chat


@pytest.fixture
async def post(
    sample_db: Database, clock: Clock, gateway: Gateway, smtp: Any, fake: FakeTelegram, tmp_path: Path
) -> AsyncIterator[Post]:
    """The service as `isiqbot run` builds it, with an SMS gateway and an SMTP server; the test drives
    the outbox."""
    mailbox, port = smtp
    settings = settings_in(
        tmp_path,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake.url,
        SMS_GATEWAY_URL=gateway.url,
        SMS_GATEWAY_TOKEN=SMS_TOKEN,
        SMS_GATEWAY_TIMEOUT=0.5,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
        SMTP_FROM="bot@azerisiq.az",
        SMTP_SECURITY="none",
        PUBLIC_BASE_URL=BASE_URL,
        LINK_SECRET=SECRET.decode(),
    )
    service = await build(settings, db=sample_db, clock=clock, code_sms=SmsRecorder(), pace=FAST)
    links = PublicLinks(LinkSigner(SECRET), BASE_URL)
    yield Post(service.conversations, service.worker, clock, gateway, mailbox, links, fake)
    await service.close()


# ---- SMS -------------------------------------------------------------------------------------------


async def test_registration_sends_an_sms_with_the_link(post: Post) -> None:
    await post.file(email_address=None)
    await post.worker.drain()
    [sms] = post.gateway.received
    assert sms["from"] == "Azerisiq" and sms["to"] == PLAIN
    assert "TX-2026-000001" in sms["text"] and "qeydə alındı" in sms["text"]
    token = re.search(rf"{re.escape(BASE_URL)}/a/([A-Za-z0-9_-]+)", sms["text"])
    assert token is not None and len(token.group(1)) <= 32
    assert post.links.signer.application_id(token.group(1)) == 1
    assert post.gateway.headers[0]["Authorization"] == f"Bearer {SMS_TOKEN}"
    assert sms_parts(sms["text"]) <= 2
    [row] = await post.rows(outbox.SMS)
    assert (row.state, row.provider_id) == ("sent", "sms-1")
    assert await post.rows(outbox.EMAIL) == []  # no address given, no e-mail


async def test_a_gateway_failing_three_times_then_delivers_once(post: Post) -> None:
    post.gateway.failures = [500, 502, 503]
    await post.file(email_address=None)
    for _ in range(4):
        await post.worker.drain()
        post.clock.advance(seconds=60)
    assert len(post.gateway.received) == 1
    [row] = await post.rows(outbox.SMS)
    assert (row.state, row.attempts) == ("sent", 4)


async def test_a_hanging_gateway_times_out_and_is_retried(post: Post) -> None:
    post.gateway.hang_next = 1
    await post.file(email_address=None)
    await post.worker.drain()
    [row] = await post.rows(outbox.SMS)
    assert row.state == "queued" and "timed out" in (row.last_error or "")
    post.clock.advance(seconds=10)
    await post.worker.drain()
    assert len(post.gateway.received) == 1
    assert (await post.rows(outbox.SMS))[0].state == "sent"


async def test_an_sms_whose_answer_was_lost_is_sent_again_under_the_same_key(post: Post) -> None:
    post.gateway.delay = 1.0  # the gateway takes the SMS and answers after the worker's 0.5 s timeout
    await post.file(email_address=None)
    await post.worker.drain()
    [row] = await post.rows(outbox.SMS)
    assert row.state == "queued" and "timed out" in (row.last_error or "")
    post.gateway.delay = 0
    post.clock.advance(seconds=10)
    await post.worker.drain()
    first, again = (h["Idempotency-Key"] for h in post.gateway.headers)
    assert first == again and first.startswith(f"isiqbot-{row.id}-")
    assert len(post.gateway.received) == 1 and post.gateway.replayed == 1  # one SMS on the phone
    [row] = await post.rows(outbox.SMS)
    assert (row.state, row.attempts, row.provider_id) == ("sent", 2, "sms-1")
    desk = StaffDesk(post.service.db, clock=post.clock)
    await desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status("1", Status.COMPLETED, "staff:1", "Kabel dəyişdirildi.")
    await post.worker.drain()  # another message: another key, and it is sent
    assert post.gateway.headers[-1]["Idempotency-Key"] != first and len(post.gateway.received) == 2


async def test_a_refusing_gateway_fails_with_its_reason(post: Post) -> None:
    post.gateway.failures = [400]
    await post.file(email_address=None)
    await post.worker.drain()
    [row] = await post.rows(outbox.SMS)
    assert row.state == "failed" and "400" in (row.last_error or "")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_sms_fits_two_parts_in_every_language(lang: str) -> None:
    link = f"{BASE_URL}/a/{LinkSigner(SECRET).token(123456)}"
    texts = [
        translate(Msg("sms.registered", {"number": "TX-2026-123456", "link": link}), lang),
        translate(Msg("sms.news", {"number": "TX-2026-123456", "link": link}), lang),
        translate(Msg("sms.otp", {"code": "123456", "minutes": 5}), lang),
    ]
    for status in ("completed", "rejected"):
        params = {"number": "TX-2026-123456", "link": link, "status": Msg(f"status.{status}")}
        texts.append(translate(Msg("sms.result", params), lang))
    for text in texts:
        assert sms_parts(text) <= 2, (lang, len(text), text)
    assert sms_parts(texts[-1]) >= 1


def test_sms_parts_counts_like_a_phone() -> None:
    assert sms_parts("a" * 160) == 1 and sms_parts("a" * 161) == 2
    assert sms_parts("ə" * 70) == 1 and sms_parts("ə" * 71) == 2 and sms_parts("ə" * 134) == 2
    assert sms_parts("ə" * 135) == 3
    assert sms_parts("{" * 80) == 1 and sms_parts("{" * 81) == 2  # extended GSM characters count twice


# ---- delivery reports ------------------------------------------------------------------------------


async def test_delivery_reports_update_the_state(post: Post) -> None:
    await post.file(email_address=None)
    await post.worker.drain()
    app = make_app(
        post.service.db, [("POST", "/sms/delivery", delivery_handler(post.service.db, SMS_TOKEN, post.clock))]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/sms/delivery"
    auth = {"Authorization": f"Bearer {SMS_TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"id": "sms-1", "status": "delivered"}) as r:
                assert r.status == 401
            async with http.post(url, data=b"{not json", headers=auth) as r:
                assert r.status == 400
            async with http.post(url, json={"id": "sms-1", "status": "lost in space"}, headers=auth) as r:
                assert r.status == 400
            async with http.post(url, json={"id": "sms-999", "status": "delivered"}, headers=auth) as r:
                assert r.status == 404
            assert (await post.rows(outbox.SMS))[0].state == "sent"
            async with http.post(url, json={"id": "sms-1", "status": "DELIVERED"}, headers=auth) as r:
                assert r.status == 200
            async with http.post(url, json={"id": "sms-1", "status": "failed"}, headers=auth) as r:
                assert r.status == 200  # a late report after delivery changes nothing
    finally:
        await runner.cleanup()
    assert (await post.rows(outbox.SMS))[0].state == "delivered"


# ---- e-mail ----------------------------------------------------------------------------------------


async def test_registration_and_result_e_mails_in_the_subscribers_language(post: Post) -> None:
    await post.file(lang="ru")
    await post.worker.drain()
    [registered] = post.mailbox.messages
    assert registered["To"] == "elcin@example.az" and registered["From"] == "bot@azerisiq.az"
    assert "TX-2026-000001" in registered["Subject"] and "зарегистрирована" in registered["Subject"]
    assert registered["Content-Language"] == "ru"
    text = registered.get_body(("plain",))
    html = registered.get_body(("html",))
    assert text is not None and html is not None
    body, page = text.get_content(), html.get_content()
    link = post.links.status_page(1)
    assert link in body and f'href="{link}"' in page
    assert "Mənzildə səhərdən işıq yoxdur" in body and "168808605066007" in body

    desk = StaffDesk(post.service.db, clock=post.clock)
    await desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status("1", Status.COMPLETED, "staff:1", "Кабель заменён <b>сегодня</b> & проверен.")
    await post.worker.drain()
    result = post.mailbox.messages[-1]
    assert "Результат" in result["Subject"]
    page = result.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;b&gt;сегодня&lt;/b&gt; &amp; проверен." in page and "<b>сегодня" not in page
    assert "Кабель заменён <b>сегодня</b> & проверен." in result.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert len(post.mailbox.messages) == 2
    assert [r.kind for r in await post.rows(outbox.SMS)] == ["sms_registered", "sms_result"]


@pytest.mark.parametrize(
    ("trouble", "error", "copies"), [("refuse", "451", 1), ("drop_answer", "Disconnected", 2)]
)
async def test_an_e_mail_refused_or_left_unanswered_is_sent_again_and_shown_once(
    post: Post, trouble: str, error: str, copies: int
) -> None:
    """A 451 is sent again later; so is an e-mail the server took before the connection dropped, under
    the same Message-ID, so that the recipient's mailbox holds one message."""
    setattr(post.mailbox, trouble, 1)
    await post.file()
    await post.worker.drain()
    [row] = await post.rows(outbox.EMAIL)
    assert row.state == "queued" and error in (row.last_error or "")
    post.clock.advance(seconds=10)
    await post.worker.drain()
    key = f"<isiqbot-{row.id}-{row.created_at:%Y%m%d%H%M%S%f}@azerisiq.az>"
    assert [m["Message-ID"] for m in post.mailbox.messages] == [key] * copies
    assert post.mailbox.distinct() == post.mailbox.messages[:1]
    [row] = await post.rows(outbox.EMAIL)
    assert row.state == "sent" and row.provider_id == key


# ---- fallback --------------------------------------------------------------------------------------


async def test_a_subscriber_who_blocked_the_bot_gets_the_news_by_sms(post: Post) -> None:
    await post.file(email_address=None)
    await post.worker.drain()
    post.fake.fail_next(
        "sendmessage",
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    )
    await StaffDesk(post.service.db, clock=post.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await post.worker.drain()
    chat_row = (await post.rows(CHANNEL))[-1]
    assert chat_row.state == "failed" and "blocked" in (chat_row.last_error or "")
    fallback = post.gateway.received[-1]
    assert fallback["to"] == PLAIN and "TX-2026-000001" in fallback["text"]
    assert f"{BASE_URL}/a/" in fallback["text"]
    assert [r.kind for r in await post.rows(outbox.SMS)] == ["sms_registered", "sms_fallback"]


async def test_a_gateway_outage_holds_back_no_other_channel(post: Post) -> None:
    post.gateway.failures = [503] * 50
    await post.file()
    await StaffDesk(post.service.db, clock=post.clock).set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await post.worker.drain()
    assert post.gateway.received == []  # the SMS waits for its retry …
    assert len(post.mailbox.messages) == 1  # … while the e-mail and the chat message go
    assert any("icradadır" in str(m.get("text")) for m in post.fake.sent_to(SUBSCRIBER))


async def test_delivery_reports_are_refused_without_a_token_to_check(post: Post) -> None:
    handler = delivery_handler(post.service.db, None, post.clock)
    runner = web.AppRunner(make_app(post.service.db, [("POST", "/sms/delivery", handler)]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/sms/delivery", json={"id": "sms-1", "status": "delivered"}
            ) as r,
        ):
            assert r.status == 401
    finally:
        await runner.cleanup()
