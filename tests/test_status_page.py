"""The status page `/a/{token}`: over HTTP, and in real headless Chromium at a phone's size."""

from __future__ import annotations

import html
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bot.channels.telegram.connector import chat_link as telegram_link
from bot.channels.whatsapp.connector import chat_link as whatsapp_link
from bot.core.links import ChatLink, LinkSigner
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.core.settings import Settings, networks
from bot.staff.desk import StaffDesk
from bot.web.server import client_address, make_app
from bot.web.statuspage import WRONG_LIMIT, StatusPage, Throttle, mask_code
from dialogs.lifecycle import Status
from locales import LANGUAGES, LOCAL_TZ, Msg, translate
from storage import outbox
from storage import visits as visit_rows
from storage.db import Database
from storage.models import Application
from tests.chat import BOTH, Chat, SmsRecorder, fill_residential
from tests.conftest import Clock
from tests.processes import free_port

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SIGNER = LinkSigner(b"status-page-test-secret-0123456789ab")


@dataclass
class Site:
    url: str
    service: Conversations
    clock: Clock
    throttle_clock: list[float]

    def link(self, application_id: int, lang: str | None = None) -> str:
        suffix = f"?lang={lang}" if lang else ""
        return f"{self.url}/a/{SIGNER.token(application_id)}{suffix}"


def chat_links(token: str, number: str) -> list[ChatLink]:
    """The links the Telegram and WhatsApp channels make, for this bot and this number."""
    return [telegram_link("isiqbot_test_bot", token), whatsapp_link("994125551234", number)]


@pytest.fixture
async def site(sample_db: Database, clock: Clock) -> AsyncIterator[Site]:
    service = Conversations(sample_db, SmsRecorder(), clock=clock, policy=StaffPolicy(), links=SIGNER)
    for user, phone in (("501", "+994996510079"), ("502", BOTH)):
        chat = Chat(service, user=user, channel="telegram")
        await fill_residential(chat, phone)
        await chat.press("send")
    now = [0.0]
    page = StatusPage(sample_db, SIGNER, service.policy, chat_links, clock, Throttle(lambda: now[0]))
    app = make_app(sample_db, [("GET", "/a/{token}", page.handle)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Site(f"http://127.0.0.1:{port}", service, clock, now)
    await runner.cleanup()


async def fetch(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


async def serve_page(db: Database, trusted_proxies: str) -> AsyncIterator[str]:
    """A status page whose TRUSTED_PROXIES come from the environment, as `isiqbot run` reads them."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TRUSTED_PROXIES", trusted_proxies)
        proxies = Settings(env_file=None).http.trusted_proxies
    page = StatusPage(db, SIGNER, StaffPolicy(), trusted_proxies=proxies)
    runner = web.AppRunner(make_app(db, [("GET", "/a/{token}", page.handle)]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/a/{'B' * 28}"  # a wrong token
    finally:
        await runner.cleanup()


@pytest.fixture
async def behind_proxy(db: Database) -> AsyncIterator[str]:
    """The test client (127.0.0.1) is the reverse proxy, with another proxy of ours (10.0.0.0/8) before it."""
    async for url in serve_page(db, "127.0.0.1, 10.0.0.0/8, fd00::/8"):
        yield url


@pytest.fixture
async def not_behind_proxy(db: Database) -> AsyncIterator[str]:
    """The test client (127.0.0.1) is not a proxy the page trusts."""
    async for url in serve_page(db, "10.0.0.0/8"):
        yield url


async def test_the_page_shows_its_application_and_nothing_private(site: Site) -> None:
    status, page, headers = await fetch(site.link(1))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "TX-2026-000001" in page and "qeydə alınıb" in page and "TX-2026-000002" not in page
    assert "+994 99 ***-**-79" in page and "651 00 79" not in page and "996510079" not in page
    assert "M9CGRC9" not in page and "Məmmədov" not in page  # no FİN, no name
    assert f"https://t.me/isiqbot_test_bot?start={SIGNER.token(1)}" in page
    assert "https://wa.me/994125551234?text=TX-2026-000001" in page
    assert "<script" not in page and headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, other, _ = await fetch(site.link(2))
    assert status == 200 and "TX-2026-000002" in other and "TX-2026-000001" not in other


async def test_the_language_comes_from_the_link_the_subscriber_or_the_browser(site: Site) -> None:
    _, russian, _ = await fetch(site.link(1, "ru"))
    assert 'lang="ru"' in russian and "Текущий статус" in russian and "зарегистрирована" in russian
    _, english, _ = await fetch(site.link(1, "en"))
    assert 'lang="en"' in english and "Current status" in english
    _, default, _ = await fetch(site.link(1), **{"Accept-Language": "en-GB,en;q=0.9"})
    assert 'lang="az"' in default  # the subscriber's own language wins over the browser's
    _, unknown, _ = await fetch(site.link(1, "fr"))
    assert 'lang="az"' in unknown


async def test_the_result_and_timeline_are_shown_as_text(site: Site) -> None:
    desk = StaffDesk(site.service.db, clock=site.clock)
    await desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    site.clock.advance(hours=3)
    await desk.set_status(
        "1", Status.COMPLETED, "staff:1", "Kabel dəyişdirildi <script>alert(1)</script> & yoxlanıldı"
    )
    _, page, _ = await fetch(site.link(1))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; yoxlanıldı" in page and "<script>" not in page
    assert page.count("<li>") == 3  # registered, in progress, completed
    assert "gözlənilir" not in page  # closed: nothing is due any more


async def test_a_refusal_shows_its_reason_not_a_result(site: Site) -> None:
    desk = StaffDesk(site.service.db, clock=site.clock)
    await desk.set_status("1", Status.REJECTED, "staff:1", "Avadanlıq şəbəkənin balansındadır.")
    _, page, _ = await fetch(site.link(1))
    assert "İmtinanın səbəbi" in page and "Avadanlıq şəbəkənin balansındadır." in page
    assert "Nəticə" not in page


@pytest.mark.parametrize(
    "token",
    ["garbage", "A" * 28, SIGNER.token(1)[:-1] + ("A" if SIGNER.token(1)[-1] != "A" else "B"), "x" * 200],
)
async def test_forged_or_unknown_tokens_get_a_404_page(site: Site, token: str) -> None:
    status, page, _ = await fetch(f"{site.url}/a/{token}")
    assert status == 404 and "Səhifə tapılmadı" in page and "TX-2026" not in page


async def test_a_token_of_an_application_that_does_not_exist_is_404(site: Site) -> None:
    status, _, _ = await fetch(site.link(999))
    assert status == 404


async def test_repeated_wrong_tokens_are_slowed_down(site: Site) -> None:
    for _ in range(WRONG_LIMIT):
        assert (await fetch(f"{site.url}/a/{'B' * 28}"))[0] == 404
    status, page, headers = await fetch(f"{site.url}/a/{'D' * 28}")
    assert status == 429 and int(headers["Retry-After"]) > 0 and "Çox sayda cəhd" in page
    assert (await fetch(site.link(1)))[0] == 200  # a real link still opens from that address
    site.throttle_clock[0] += 601
    assert (await fetch(f"{site.url}/a/{'D' * 28}"))[0] == 404  # the window has moved on


async def test_behind_a_trusted_proxy_each_visitor_is_slowed_down_on_their_own(behind_proxy: str) -> None:
    forwarded = [
        "203.0.113.7",
        "203.0.113.7, 10.1.2.3",  # through a second proxy of ours: skipped
        "198.51.100.1, 203.0.113.7",  # what the visitor wrote on the left is never read
        "garbage, 203.0.113.7",
    ]
    for attempt in range(WRONG_LIMIT):
        xff = forwarded[attempt % len(forwarded)]
        assert (await fetch(behind_proxy, **{"X-Forwarded-For": xff}))[0] == 404, xff
    status, page, headers = await fetch(behind_proxy, **{"X-Forwarded-For": "203.0.113.7"})
    assert status == 429 and "Çox sayda cəhd" in page and int(headers["Retry-After"]) > 0
    # The visitor cannot step out of their own count by writing another address in front ...
    assert (await fetch(behind_proxy, **{"X-Forwarded-For": "192.0.2.55, 203.0.113.7"}))[0] == 429
    # ... and everyone else behind the same proxy is not held back by them.
    assert (await fetch(behind_proxy, **{"X-Forwarded-For": "203.0.113.8"}))[0] == 404
    assert (await fetch(behind_proxy, **{"X-Forwarded-For": "2001:db8::8"}))[0] == 404
    assert (await fetch(behind_proxy))[0] == 404  # no header: the proxy itself, counted on its own


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(not_behind_proxy: str) -> None:
    for attempt in range(WRONG_LIMIT):  # a new address made up every time: all of them are 127.0.0.1
        forged = {"X-Forwarded-For": f"203.0.113.{attempt}"}
        assert (await fetch(not_behind_proxy, **forged))[0] == 404
    assert (await fetch(not_behind_proxy, **{"X-Forwarded-For": "198.51.100.99"}))[0] == 429
    assert (await fetch(not_behind_proxy))[0] == 429


PROXIES = networks("127.0.0.1, 10.0.0.0/8, fd00::/8", "TRUSTED_PROXIES")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", None, "127.0.0.1"),  # no header: the peer
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7, 10.0.0.2"], "203.0.113.7"),  # from the right
        ("127.0.0.1", ["198.51.100.1", "203.0.113.7"], "203.0.113.7"),  # two headers are one list
        ("127.0.0.1", ["garbage, 203.0.113.7"], "203.0.113.7"),  # never read that far
        ("127.0.0.1", ["203.0.113.7, not-an-ip"], "127.0.0.1"),  # malformed where read: the peer
        ("127.0.0.1", [""], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all ours: the leftmost
        ("127.0.0.1", ["2001:DB8::7"], "2001:db8::7"),
        ("127.0.0.1", ["[2001:db8::7]"], "2001:db8::7"),
        ("fd00::1", ["2001:db8::7, fd00::2"], "2001:db8::7"),  # an IPv6 proxy
        ("::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),  # a dual-stack socket's IPv4 peer
        ("192.0.2.1", ["203.0.113.7"], "192.0.2.1"),  # not a proxy of ours: its header is not read
        ("10.9.9.9", ["203.0.113.7"], "203.0.113.7"),
    ],
)
def test_the_client_address(peer: str, forwarded: list[str] | None, client: str) -> None:
    headers = [("X-Forwarded-For", value) for value in forwarded or []]
    request = make_mocked_request("GET", "/a/x", headers=headers).clone(remote=peer)
    assert client_address(request, PROXIES) == client
    assert client_address(request) == peer  # TRUSTED_PROXIES empty: nobody's header is believed


async def test_the_account_code_is_masked_but_its_last_4_digits(site: Site) -> None:
    async with site.service.db.transaction() as session:
        application = await session.get(Application, 1)
        assert application is not None
        code = application.account_code
    _, page, _ = await fetch(site.link(1))
    assert len(code) >= 10 and code not in page and code[:-4] not in page
    assert "*" * (len(code) - 4) + code[-4:] in page
    assert mask_code("168808605067007") == "***********7007"
    assert mask_code("5412017015") == "******7015"


async def test_a_link_expires_half_a_year_after_the_application_closed(site: Site) -> None:
    desk = StaffDesk(site.service.db, clock=site.clock)
    await desk.set_status("1", Status.REJECTED, "staff:1", "Avadanlıq abonentin balansında deyil.")
    site.clock.advance(days=179)
    assert (await fetch(site.link(1)))[0] == 200
    site.clock.advance(days=2)
    status, page, _ = await fetch(site.link(1))
    assert status == 404 and "müddəti bitib" in page
    site.clock.advance(days=400)
    assert (await fetch(site.link(2)))[0] == 200  # still open: its link keeps working


# ---- in a real browser -----------------------------------------------------------------------------


def _browser_or_skip() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("ISIQBOT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"Chromium is required here but {CHROMIUM} does not exist (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed")


async def test_the_page_in_chromium_on_a_phone_in_every_language(site: Site, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the page is the same on both databases; the browser runs once")
    executable = _browser_or_skip()
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    desk = StaffDesk(site.service.db, clock=site.clock)
    await desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    expected = {"az": "icradadır", "ru": "в работе", "en": "in progress"}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = await browser.new_context(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                java_script_enabled=False,
                locale="az-AZ",  # a phone set to Azerbaijani: the 404 page follows the browser
            )
            page = await context.new_page()
            for lang in LANGUAGES:
                response = await page.goto(site.link(1, lang))
                assert response is not None and response.status == 200
                assert expected[lang] in (await page.inner_text("#status")).lower()
                assert "TX-2026-000001" in await page.inner_text("h1")
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390  # nothing wider than the phone
                telegram = page.get_by_role("link", name="Telegram")
                assert (await telegram.get_attribute("href") or "").startswith(
                    "https://t.me/isiqbot_test_bot?start="
                )
                box = await telegram.bounding_box()
                assert box is not None and box["height"] >= 40  # a button a thumb can press
                await page.screenshot(path=str(ARTIFACTS / f"status-page-{lang}.png"), full_page=True)
            switch = page.get_by_role("link", name="Azərbaycan dili")
            await switch.click()
            assert "icradadır" in await page.inner_text("#status")
            response = await page.goto(f"{site.url}/a/{'C' * 28}")
            assert response is not None and response.status == 404
            assert "Səhifə tapılmadı" in await page.inner_text("h1")
            await page.screenshot(path=str(ARTIFACTS / "status-page-404.png"), full_page=True)
        finally:
            await browser.close()
    for name in ("status-page-az.png", "status-page-ru.png", "status-page-en.png", "status-page-404.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


async def test_the_departments_messages_are_on_the_page(site: Site) -> None:
    voice = {"kind": "voice", "ref": "AwAD-secret-ref", "mime": "audio/ogg", "size": 9, "name": ""}
    async with site.service.db.transaction() as session:
        # Words, and a voice note: named in a word, the file itself stays off the page.
        for said in ({"text": "Usta sabah <b>10-da</b> gələcək."}, {"text": "", "file": voice}):
            outbox.enqueue(
                session,
                channel="telegram",
                user_key="501",
                kind="staff_message",
                payload={"department": "baki", "number": "TX-2026-000001", **said},
                now=site.clock(),
                application_id=1,
            )
    _, page, _ = await fetch(site.link(1))
    assert "Şöbənin mesajları" in page and "Usta sabah &lt;b&gt;10-da&lt;/b&gt; gələcək." in page
    assert "📎 səs yazısı" in page and "AwAD-secret-ref" not in page


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_the_visit_offered_then_agreed_is_on_the_page_while_it_is_open(site: Site, lang: str) -> None:
    """No buttons on the page: the times offered are listed, to be picked in the chat; then the one
    agreed; nothing once the application is closed."""
    baku = LOCAL_TZ
    windows = [
        (datetime(2026, 11, 28, 10, tzinfo=baku), datetime(2026, 11, 28, 12, tzinfo=baku)),
        (datetime(2026, 11, 29, 14, tzinfo=baku), datetime(2026, 11, 29, 16, tzinfo=baku)),
    ]
    async with site.service.db.transaction() as session:
        await visit_rows.propose(session, 1, windows, "staff:Rauf", site.clock())
    _, page, _ = await fetch(site.link(1, lang))
    offered = translate(Msg("page.visit_offered", {"windows": "28.11 10:00–12:00; 29.11 14:00–16:00"}), lang)
    assert html.escape(offered, quote=False) in page

    site.clock.advance(days=1, hours=2)  # the first window has begun: only the second is offered
    _, page, _ = await fetch(site.link(1, lang))
    offered = translate(Msg("page.visit_offered", {"windows": "29.11 14:00–16:00"}), lang)
    assert html.escape(offered, quote=False) in page and "28.11 10:00" not in page

    async with site.service.db.transaction() as session:
        application = await session.get(Application, 1, with_for_update=True)
        assert application is not None
        visit = await visit_rows.get(session, 1)
        assert visit is not None
        await visit_rows.choose(session, application, visit_rows.proposal_of(visit), 1, site.clock())
    _, page, _ = await fetch(site.link(1, lang))
    agreed = translate(Msg("visit.agreed", {"window": "29.11 14:00–16:00"}), lang)
    assert html.escape(agreed, quote=False) in page and 'id="visit"' in page

    desk = StaffDesk(site.service.db, clock=site.clock)
    await desk.set_status("1", Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status("1", Status.COMPLETED, "staff:1", "Sayğac dəyişdirildi.")
    _, page, _ = await fetch(site.link(1, lang))
    assert 'id="visit"' not in page
