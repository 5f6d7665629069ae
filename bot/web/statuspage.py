"""The status page, `GET /a/{token}`: one application's status for anyone holding its link, no chat needed.

It works without JavaScript, is laid out for a phone first, speaks the subscriber's language with a
switch to the others, and shows no FİN, a masked phone and only the last 4 digits of the account code
(a link is forwarded more easily than a phone). A wrong token gets a 404 page; a client that keeps
trying wrong tokens is slowed down with 429s. Behind a reverse proxy listed in TRUSTED_PROXIES, the
client is the address the proxy forwards, so one visitor's wrong tokens never hold back another's.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from bot.core.clock import Clock, system_clock
from bot.core.links import ChatLink, LinkSigner
from bot.core.policy import StaffPolicy
from bot.core.settings import Network
from bot.core.templates import TEMPLATES
from bot.notify.outbox import staff_file
from bot.web.server import client_address
from dialogs import attachments
from dialogs import visits as dialogs_visits
from dialogs.lifecycle import OPEN, Status
from dialogs.ports import VisitView
from dialogs.validate import mask_phone
from locales import DEFAULT_LANGUAGE, LANGUAGES, Msg, translate
from storage import applications, outbox, staff, visits
from storage.db import Database, as_utc
from storage.models import Application

EXPIRES_AFTER = timedelta(days=180)  # after the application is closed, its link stops working
WRONG_LIMIT = 10  # wrong tokens from one address …
WRONG_WINDOW = 600.0  # … within this many seconds, then 429 until the window moves on
MAX_ADDRESSES = 50_000  # addresses remembered at once
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
}


class Throttle:
    """Counts wrong tokens per address in a sliding window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, address: str) -> deque[float]:
        now = self.clock()
        window = self.failures[address]
        while window and now - window[0] > WRONG_WINDOW:
            window.popleft()
        if not window:
            del self.failures[address]
            return deque()
        return window

    def retry_after(self, address: str) -> int | None:
        window = self._recent(address)
        if len(window) < WRONG_LIMIT:
            return None
        return max(int(WRONG_WINDOW - (self.clock() - window[0])) + 1, 1)

    def failed(self, address: str) -> None:
        if len(self.failures) >= MAX_ADDRESSES:  # bounded: forget addresses whose window has passed
            for known in list(self.failures):
                self._recent(known)
        if len(self.failures) < MAX_ADDRESSES or address in self.failures:
            self._recent(address)
            self.failures[address].append(self.clock())


class StatusPage:
    def __init__(
        self,
        db: Database,
        signer: LinkSigner,
        policy: StaffPolicy,
        chat_links: Callable[[str, str], Sequence[ChatLink]] = lambda token, number: (),
        clock: Clock = system_clock,
        throttle: Throttle | None = None,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.db = db
        self.signer = signer
        self.policy = policy
        self.chat_links = chat_links  # `Channels.chat_links`: "continue in Telegram", "… in WhatsApp"
        self.clock = clock
        self.throttle = throttle or Throttle()
        self.trusted_proxies = tuple(trusted_proxies)  # TRUSTED_PROXIES: whose X-Forwarded-For is believed

    async def handle(self, request: web.Request) -> web.Response:
        address = client_address(request, self.trusted_proxies)  # behind the proxy: the visitor, not it
        wanted = request.query.get("lang")
        token = request.match_info.get("token", "")
        application_id = self.signer.application_id(token)  # no database: forging one is hopeless anyway
        wait = self.throttle.retry_after(address) if application_id is None else None
        if wait is not None:  # only wrong tokens wait: a real link opens even from a busy address
            lang = _language(wanted, request.headers.get("Accept-Language"), None)
            page = self._plain(lang, "page.too_many_title", "page.too_many_text")
            return _html(page, 429, {"Retry-After": str(wait)})
        application: Application | None = None
        history: list[Any] = []
        said: list[Any] = []
        visit = None
        if application_id is not None:
            async with self.db.transaction() as session:
                application = await session.get(Application, application_id)
                if application is not None:
                    history = (await applications.histories(session, [application_id]))[application_id]
                    said = [
                        n
                        for n in await outbox.for_application(session, application_id)
                        if n.kind == "staff_message"
                    ]
                    visit = visits.view(await visits.get(session, application_id))
        if application is None:
            if application_id is None:
                self.throttle.failed(address)
            lang = _language(wanted, request.headers.get("Accept-Language"), None)
            return _html(self._plain(lang, "page.not_found_title", "page.not_found_text"), 404)
        lang = _language(wanted, request.headers.get("Accept-Language"), application.lang)
        now = self.clock()
        closed = Status(application.status) not in OPEN
        if closed and now - as_utc(application.updated_at) > EXPIRES_AFTER:
            return _html(self._plain(lang, "page.not_found_title", "page.expired_text"), 404)
        return _html(self._page(application, history, said, visit, token, lang, now))

    def _page(
        self,
        application: Application,
        history: list[Any],
        said: list[Any],
        visit: VisitView | None,
        token: str,
        lang: str,
        now: datetime,
    ) -> str:
        def t(key: str, **params: Any) -> str:
            return translate(Msg(key, params), lang)

        status = Status(application.status)
        context: dict[str, Any] = {
            "lang": lang,
            "title": t("page.title", number=application.number),
            "heading": t("page.heading"),
            "number": application.number,
            "status_label": t("page.status"),
            "status": t(f"status.{status.value}"),
            "status_class": status.value,
            "facts": [
                (t("page.reason"), t(f"reason.{application.reason}")),
                (t("page.account"), _account(application)),
                (t("page.filed"), t("page.when", date=as_utc(application.created_at))),
                (t("page.phone"), mask_phone(application.mobile)),
                *self._attached(application, lang),
            ],
            "due": (
                t("page.due", date=staff.due_at(application, self.policy.done_within))
                if status in OPEN
                else None
            ),
            "visit": (
                translate(line, lang)
                if status in OPEN and (line := dialogs_visits.summary(visit, now)) is not None
                else None
            ),
            "result_label": t(f"result.{status.value}") if application.result else "",
            "result": application.result,
            **self._since(application, history, said, token, lang),
            **_frame(lang),
        }
        return TEMPLATES.get_template("status.html.j2").render(context)

    def _since(
        self, application: Application, history: list[Any], said: list[Any], token: str, lang: str
    ) -> dict[str, Any]:
        """What happened since it was filed, and where to go on: the timeline, the department's
        messages (a subscriber who cannot be reached in a chat reads them here), the chats."""

        def when(at: datetime) -> str:
            return translate(Msg("page.when", {"date": as_utc(at)}), lang)

        return {
            "timeline_label": translate(Msg("page.timeline"), lang),
            "timeline": [
                (when(c.created_at), translate(Msg(f"status.{c.new_status}"), lang)) for c in history
            ],
            "messages_label": translate(Msg("page.messages"), lang),
            "messages": [(when(n.created_at), _said(n, lang)) for n in said],
            "open_label": translate(Msg("page.open_chat"), lang),
            "chats": [
                (link.kind, link.url, translate(link.label, lang))
                for link in self.chat_links(token, application.number)
            ],
        }

    @staticmethod
    def _attached(application: Application, lang: str) -> list[tuple[str, str]]:
        """What is attached, in words only: the files' references stay off a public page."""
        found = attachments.summary(
            attachments.of_application(application.photo_ref, application.attachments)
        )
        return [] if found is None else [(translate(Msg("page.attachments"), lang), translate(found, lang))]

    def _plain(self, lang: str, title_key: str, text_key: str) -> str:
        context = {
            "lang": lang,
            "title": translate(Msg(title_key), lang),
            "text": translate(Msg(text_key), lang),
            **_frame(lang),
        }
        return TEMPLATES.get_template("notice.html.j2").render(context)


def _frame(lang: str) -> dict[str, Any]:
    """What every page has around it: the language switch and the footer."""
    return {
        "languages": [(code, translate(Msg(f"lang.name_{code}"), code), code == lang) for code in LANGUAGES],
        "footer": translate(Msg("page.footer"), lang),
    }


def mask_code(code: str) -> str:
    """A subscriber code or main code with only its last 4 digits shown: ***********7007."""
    return "*" * (len(code) - 4) + code[-4:] if len(code) > 4 else "*" * len(code)


def _account(application: Application) -> str:
    """The account as the page shows it: the code masked; a metering point (UN-0001) stays as it is."""
    code = mask_code(application.account_code)
    return f"{code} / {application.metering_point_code}" if application.metering_point_code else code


def _language(wanted: str | None, accept: str | None, stored: str | None) -> str:
    """?lang= first, then the subscriber's own language, then the browser's, then Azerbaijani."""
    if wanted in LANGUAGES:
        return str(wanted)
    if stored in LANGUAGES:
        return str(stored)
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response


def _said(notification: Any, lang: str) -> str:
    """A department's message as the page shows it: its words, and what came with them in a word
    (a photo, a voice note, a document), never the file itself."""
    text = str(notification.payload.get("text") or "")
    file = staff_file(notification)
    if file is None:
        return text
    kind = translate(Msg(f"attachments.kind_{file['kind']}", {"count": 1}), lang)
    return f"{text} 📎 {kind}".strip()
